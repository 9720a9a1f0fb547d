"""`genies demo`: generalization in miniature — the synthetic suite with planted causes, every
registered intervention that fits a wall-clock budget, the results, the paired comparison and an
HTML report (the logic is in ``genies.pipeline.demo``)."""

from __future__ import annotations

from pathlib import Path

import typer

from genies.cli._console import make_console

_HELP = """Show what GENIES measures, in minutes, on a CPU.

Prepares the model, generates the synthetic suite (genies data synth: 7 shifts, each with a planted
cause), runs zero_shot and every other registered intervention that fits --budget over it (fast
settings: genies.pipeline.demo.DEMO_CONFIGS), and, when the official data is in the store (or
$GENIES_DATA_SOURCE names a release to import), zero_shot on the real `test` suite. Prints the
results, the paired comparison with zero_shot and per-step timings, writes <out>/demo-report.html,
and ends with the commands that run the real benchmark. Everything is cached: a rerun takes seconds.
"""


def register(app: typer.Typer) -> None:
    app.command("demo", help=_HELP)(demo_command)


def demo_command(
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Model alias or local HF folder."),
    out: Path = typer.Option(Path("genies-results/demo"), "--out", "-o", help="Output folder."),
    budget: float = typer.Option(
        10.0,
        "--budget",
        min=0.0,
        help="Wall-clock budget in minutes (runs that would overshoot are skipped).",
    ),
    interventions: str | None = typer.Option(
        None,
        "--interventions",
        "-i",
        help="Comma-separated interventions to try \\[default: every registered one; zero_shot always].",
    ),
    limit: int = typer.Option(
        20, "--limit", "-n", min=1, help="--limit of each synthetic run (pairs / training examples)."
    ),
    real_limit: int = typer.Option(20, "--real-limit", min=1, help="--limit of the real-data run."),
    size: int | None = typer.Option(
        None, "--size", min=1, help="Train examples per synthetic distribution \\[default: 200]."
    ),
    test_size: int | None = typer.Option(
        None,
        "--test-size",
        min=1,
        help="Test examples per synthetic distribution \\[default: 100, or size/2].",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the data and of every run."),
    data_source: str | None = typer.Option(
        None,
        "--data-source",
        help="A release to import for the real-data step \\[default: $GENIES_DATA_SOURCE].",
    ),
    store: Path | None = typer.Option(None, "--store", help="Result store \\[default: $GENIES_STORE_DIR]."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data store \\[default: $GENIES_DATA_DIR]."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    from genies.pipeline.demo import DemoOptions, run_demo

    names = None
    if interventions is not None:
        names = [n.strip() for n in interventions.split(",") if n.strip()]
    options = DemoOptions(
        model=model,
        out=out,
        store=store,
        data_dir=data_dir,
        budget_s=budget * 60.0,
        seed=seed,
        train_size=size,
        test_size=test_size,
        limit=limit,
        real_limit=real_limit,
        interventions=names,
        data_source=data_source,
        device=device,
        progress=progress,
    )
    run_demo(options, make_console(stderr=True), make_console(piped_width=200))
