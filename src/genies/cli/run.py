"""`genies run`: generalization metrics of one intervention over a suite of shifts (cached, resumable)."""

from __future__ import annotations

from pathlib import Path

import typer

from genies.cli._console import make_console

_HELP = """Compute generalization metrics for one intervention over a suite of distribution shifts.

Steps (as upstream): the baseline intervention on the base model for each unique target; the
target-tuned reference for each unique target_reference; the intervention trained on each unique
source, evaluated on that source's targets and on the source itself. Writes <out>/<suite>.csv (the
paper's 11 columns) and <out>/<suite>.json (typed rows with bootstrap CIs).

The run is a graph of jobs (fits, evaluations, data-level length checks), each cached in the result
store by content hash (intervention + config, model weights, data, seed, the pairs scored, scoring
version) and verified when reused: a rerun reuses what exists, an interrupted run resumes where it
stopped, damaged entries are reported and recomputed. --workers N runs jobs in N processes.

Configs: each role has its own — a TOML file with tables \\[intervention], \\[baseline] and
\\[ttc] (\\[ttc.NAME] per candidate with --ttc best-of), and/or --set ROLE.KEY=VALUE
(e.g. --set intervention.num_shots=2, --set ttc.few_shot.scoring=mean). Unknown keys are errors.
"""


def register(app: typer.Typer) -> None:
    app.command("run", help=_HELP)(run_command)
    app.command("node", hidden=True, help="Run one job-graph node from its JSON (worker processes).")(
        node_command
    )


def node_command(
    path: Path = typer.Argument(..., help="A node's JSON file (genies.pipeline.graph.Node)."),
    store: Path | None = typer.Option(None, "--store", help="Result store."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data store."),
) -> None:
    import json

    from genies.paths import store_dir
    from genies.pipeline.worker import run_node_file

    err = make_console(stderr=True)
    out = run_node_file(
        path,
        store=store_dir(store),
        data_dir=data_dir,
        log=lambda m: err.print(m, markup=False, highlight=False),
    )
    typer.echo(json.dumps(out.to_json()))


def run_command(
    intervention: str = typer.Option(
        ..., "--intervention", "-i", help="Intervention to evaluate (zero_shot, few_shot or a plug-in)."
    ),
    suite: str = typer.Option(
        "genies",
        "--suite",
        "-s",
        help="Suite name (genies, all, all-paper, test, a category…) or a JSON shift file.",
    ),
    model: str = typer.Option(
        "smollm2-135m", "--model", "-m", help="Model alias, local HF folder, or hub id."
    ),
    limit: int | None = typer.Option(
        None,
        "--limit",
        "-n",
        help="Score only the first N pairs of each evaluation and train on at most the first N examples "
        "of each training split (part of the cache key).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice (part of the cache key)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder \\[default: genies-results/<model>/<intervention>]."
    ),
    store: Path | None = typer.Option(
        None, "--store", help="Result store \\[default: $GENIES_STORE_DIR or ~/.cache/genies/store]."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data store \\[default: $GENIES_DATA_DIR or ~/.cache/genies/data]."
    ),
    baseline_intervention: str = typer.Option(
        "zero_shot", "--baseline-intervention", help="Intervention run on the base model as the baseline."
    ),
    ttc: str = typer.Option(
        "single",
        "--ttc",
        help="Target-tuned capability: 'single' (one intervention trained and evaluated on the "
        "target_reference) or 'best-of:I1,I2,…' (the best of several; the paper tables' definition).",
    ),
    ttc_intervention: str | None = typer.Option(
        None,
        "--ttc-intervention",
        help="The intervention for --ttc single \\[default: the --intervention itself].",
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML file with \\[intervention], \\[baseline] and \\[ttc] tables."
    ),
    sets: list[str] = typer.Option([], "--set", help="Config override ROLE.KEY=VALUE (repeatable)."),
    force: bool = typer.Option(
        False, "--force", help="Recompute everything this run needs (and invalidate what depended on it)."
    ),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="float32, bfloat16 or float16 \\[default: float32 on CPU, bfloat16 on CUDA]."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    executor: str = typer.Option(
        "local",
        "--executor",
        help="Where jobs run: local (this machine), submitit (Slurm, or local jobs where there is no Slurm) or ray (a local Ray cluster, or RAY_ADDRESS). Options: genies sweep-run's config.",
    ),
    workers: int = typer.Option(
        1, "--workers", "-w", help="Worker processes (1: in this process, sequentially)."
    ),
    activation_dtype: str = typer.Option(
        "float32",
        "--activation-dtype",
        help="Storage dtype of the activation cache the representation methods read: float32 or "
        "bfloat16 (half the disk; read back as float32; part of the cache key).",
    ),
) -> None:
    import time

    from rich.console import Console

    from genies.pipeline.suite import RunOptions, run_suite

    err = Console(stderr=True, highlight=False)
    if "/" in intervention or intervention in (".", ".."):  # an upstream-style directory (tune stream)
        import json as _json

        from genies.interventions.upstream_dir import upstream_config_values

        values = upstream_config_values(intervention)
        sets = [*(f"intervention.{k}={_json.dumps(v)}" for k, v in values.items()), *sets]
        intervention = "upstream_dir"
    options = RunOptions(
        intervention=intervention,
        suite=suite,
        model=model,
        limit=limit,
        seed=seed,
        out=out,
        store=store,
        data_dir=data_dir,
        baseline_intervention=baseline_intervention,
        ttc=ttc,
        ttc_intervention=ttc_intervention,
        config_file=config,
        sets=list(sets),
        force=force,
        device=device,
        dtype=dtype,
        progress=progress,
        executor=executor,
        workers=workers,
        activation_dtype=activation_dtype,
    )
    t0 = time.perf_counter()
    outcome = run_suite(options, console=err)
    p = outcome.prepared
    res = outcome.result
    ttc_desc = res.ttc
    if p.ttc.mode == "single":
        name = p.ttc.interventions[0]
        how = "the intervention's config" if name in p.configs.ttc_inherited else "its own config"
        ttc_desc = f"single: {name} trained and evaluated on each target_reference ({how})"
    err.print(f"target-tuned capability: {ttc_desc}", markup=False)
    err.print(f"store: {outcome.counters.summary()}", markup=False)
    err.print(
        f"fitted states (chosen layers/heads, probe accuracies): genies show-state --list --store {p.store.root}",
        markup=False,
    )
    err.print(
        f"wrote {outcome.csv_path} and {outcome.json_path} in {time.perf_counter() - t0:.1f} s", markup=False
    )

    from genies.report.table import render_suite_result

    out_console = make_console(piped_width=200)
    render_suite_result(res, out_console, outcome.json_path)
