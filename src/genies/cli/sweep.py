"""`genies sweep`: hyperparameter search for one intervention on a distribution's hps split."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from genies.paths import store_dir

_HELP = """Search hyperparameters of one intervention on a distribution's hps split (upstream §3.9):
train on the first --n-train examples of its train split, score the next --n-val (the test split is
never read), and print every trial and the best config. Trials are cached in the result store
(<store>/sweeps/); an interrupted sweep resumes. --grid lr=1e-5,7e-5,2e-4 (repeatable; aliases lr,
steps, bs) runs the full grid; --search optuna --trials N samples with optuna's seeded TPE, where
KEY=LO:HI is a range (log-uniform for floats)."""


def register(app: typer.Typer) -> None:
    app.command("sweep", help=_HELP)(sweep)


def sweep(
    intervention: str = typer.Option(..., "--intervention", "-i", help="Intervention to tune."),
    distribution: str = typer.Option(
        ..., "--distribution", "-d", help="Distribution whose train split is used."
    ),
    grid: list[str] = typer.Option(..., "--grid", "-g", help="KEY=V1,V2,… or KEY=LO:HI (repeatable)."),
    search: str = typer.Option("grid", "--search", help="grid or optuna."),
    trials: int | None = typer.Option(
        None, "--trials", min=1, help="Trials for --search optuna [default 8]."
    ),
    objective: str = typer.Option("accuracy", "--objective", help="Metric of the held-out evaluation."),
    model: str = typer.Option(
        "smollm2-135m", "--model", "-m", help="Model alias, local HF folder, or hub id."
    ),
    sets: list[str] = typer.Option([], "--set", help="Base config KEY=VALUE for every trial (repeatable)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random choice."),
    n_train: int = typer.Option(400, "--n-train", min=1, help="hps training examples (first N)."),
    n_val: int = typer.Option(200, "--n-val", min=1, help="held-out examples (the next N)."),
    store: Path | None = typer.Option(None, "--store", help="Result store."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Data store."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep as JSON."),
) -> None:
    from genies.errors import ConfigError
    from genies.metrics import summarize
    from genies.pipeline.config import parse_value
    from genies.pipeline.hps import parse_grid, run_sweep

    if search not in ("grid", "optuna"):
        raise ConfigError(f"--search must be grid or optuna, not {search!r}")
    if objective not in summarize([0.5]):
        raise ConfigError(f"unknown --objective {objective!r} (one of {', '.join(summarize([0.5]))})")
    base = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad --set {item!r}: expected KEY=VALUE")
        base[key.strip().removeprefix("intervention.")] = parse_value(value)
    err = Console(stderr=True, highlight=False)
    result = run_sweep(
        intervention, distribution, parse_grid(grid), model=model, store=store_dir(store), data_dir=data_dir,
        base_config=base, device=device, seed=seed, search=search, trials=trials, objective=objective,  # type: ignore[arg-type]
        n_train=n_train, n_val=n_val, log=lambda m: err.print(m, markup=False, soft_wrap=True),
    )  # fmt: skip
    best = result.best
    keys = sorted({k for t in result.trials for k in t.config if k in parse_grid(grid)})
    if as_json:
        doc = json.loads(result.path.read_text(encoding="utf-8")) if result.path else {}
        typer.echo(json.dumps(doc, indent=1))
        return
    table = Table(title=f"{intervention} on {distribution} (hps {n_train}/{n_val}, objective {objective})")
    for k in keys:
        table.add_column(k)
    table.add_column(objective, justify="right")
    table.add_column("fit s", justify="right")
    for t in result.trials:
        mark = " *" if t is best else ""
        table.add_row(*(str(t.config[k]) for k in keys), f"{t.objective:.4f}{mark}", f"{t.fit_s:.1f}")
    Console(highlight=False).print(table)
    typer.echo(f"best: {json.dumps({k: best.config[k] for k in keys})} ({objective} {best.objective:.4f})")
    typer.echo(f"sweep: {result.path}")
