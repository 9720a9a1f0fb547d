"""`genies sweep-run` / `genies sweep-status`: a sweep of models × interventions × suites as one graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

_HELP = """Run a sweep: models × interventions × suites from a TOML file, as one deduplicated job graph.

Every (model, intervention, suite) is planned exactly as `genies run` plans it (same per-role
configs, same checks); nodes the runs share (baselines, references, activations) run once, and
nodes already in the store are skipped (--force recomputes every node, as `genies run --force`).
Failures are recorded under <out>/.sweep/failures/ with their logs; the rest of the sweep goes on. Outputs: <out>/<model>/<intervention>/<suite>.csv/.json.
See docs/scale-out.md for the file format, Slurm (submitit) and Ray.
"""


def register(app: typer.Typer) -> None:
    app.command("sweep-run", help=_HELP)(sweep_run_command)
    app.command("sweep-status", help="Show done / running / failed / pending nodes of a sweep, per kind.")(
        sweep_status_command
    )


def _overrides(executor, workers, cluster, partition, account, ray_address) -> dict[str, Any]:
    ex: dict[str, Any] = {}
    if executor is not None:
        ex["name"] = executor
    if workers is not None:
        ex["workers"] = workers
    sub = {k: v for k, v in {"cluster": cluster, "partition": partition, "account": account}.items() if v}
    if sub:
        ex["submitit"] = sub
    if ray_address:
        ex["ray"] = {"address": ray_address}
    return {"executor": ex} if ex else {}


def _prepare(config: Path, overrides: dict[str, Any], err: Any):
    from genies.pipeline.sweep import load_sweep_config, prepare_sweep

    cfg = load_sweep_config(config, overrides)
    return prepare_sweep(cfg, warn=lambda m: err.print(f"warning: {m}", markup=False))


def _status_table(status: Any, title: str):
    from rich.table import Table

    from genies.pipeline.sweep import status_table_rows

    table = Table(title=title)
    for col in ("kind", "done", "running", "failed", "pending"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for row in status_table_rows(status):
        table.add_row(*map(str, row))
    return table


def sweep_run_command(
    config: Path = typer.Argument(..., help="Sweep TOML (see docs/scale-out.md)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (nodes per kind, done, GPU-hours)."
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Rerun nodes that failed before."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Recompute every node of the sweep in a new run generation, ignoring stored results "
        "(no confirmation; with --dry-run: show the plan so). A killed forced sweep resumes when rerun.",
    ),
    executor: str | None = typer.Option(
        None, "--executor", help="local, submitit or ray \\[default: config]."
    ),
    workers: int | None = typer.Option(None, "--workers", "-w", help="Processes for --executor local."),
    cluster: str | None = typer.Option(None, "--cluster", help="submitit cluster: slurm, local or debug."),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition."),
    account: str | None = typer.Option(None, "--account", help="Slurm account."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address \\[default: local]."
    ),
) -> None:
    from rich.console import Console

    from genies.cli._console import make_console
    from genies.pipeline.sweep import execute_sweep, sweep_status, sweep_summary

    err = Console(stderr=True, highlight=False)
    sweep = _prepare(config, _overrides(executor, workers, cluster, partition, account, ray_address), err)
    summary = sweep_summary(sweep)
    err.print(
        f"{summary['runs']} runs, {summary['nodes']} nodes ({summary['nodes_without_dedup']} before "
        f"deduplication); store: {sweep.store.root}",
        markup=False,
    )
    if dry_run:
        from genies.pipeline.suite import remove_empty

        status = sweep_status(sweep, force=force)
        out = make_console(piped_width=200)
        title = f"sweep {config.name}: plan" + (" (--force: every node recomputed)" if force else "")
        out.print(_status_table(status, title))
        out.print(f"to compute: {len(status.todo)} nodes; estimated GPU-hours: {status.gpu_hours:.2f}")
        remove_empty(sorted(set(sweep.created), key=lambda p: -len(p.parts)))
        return
    name = sweep.config.executor.name
    err.print(f"executor: {name}", markup=False)
    result = execute_sweep(
        sweep, retry_failed=retry_failed, force=force, log=lambda m: err.print(m, markup=False)
    )
    err.print(f"store: {result.counters.summary()}", markup=False)
    for _run, csv_path, _ in result.written:
        err.print(f"wrote {csv_path}", markup=False)
    for run, missing in result.incomplete:
        err.print(f"incomplete: {run.model} / {run.intervention} / {run.suite}: {missing} evaluations missing",
                  markup=False)  # fmt: skip
    err.print(
        f"{result.todo} nodes run in {result.seconds:.1f} s; {len(result.failed)} failed"
        + (f"; {result.skipped_failed} skipped (failed before)" if result.skipped_failed else ""),
        markup=False,
    )
    if result.failed or result.incomplete:
        err.print(f"failure logs: {sweep.state_dir / 'failures'}; see `genies sweep-status {config}`",
                  markup=False)  # fmt: skip
        raise typer.Exit(1)


def sweep_status_command(
    config: Path = typer.Argument(..., help="Sweep TOML."),
    failures: bool = typer.Option(False, "--failures", help="List the failed nodes with their errors."),
) -> None:
    from rich.console import Console

    from genies.cli._console import make_console
    from genies.pipeline.suite import remove_empty
    from genies.pipeline.sweep import sweep_status

    err = Console(stderr=True, highlight=False)
    sweep = _prepare(config, {}, err)
    status = sweep_status(sweep)
    remove_empty(sorted(set(sweep.created), key=lambda p: -len(p.parts)))
    out = make_console(piped_width=200)
    out.print(_status_table(status, f"sweep {config.name}"))
    out.print(f"to compute: {len(status.todo)} nodes; estimated GPU-hours: {status.gpu_hours:.2f}")
    if status.forced is not None:
        out.print(f"unfinished forced run (generation {status.forced}): `genies sweep-run {config}` continues it",
                  markup=False)  # fmt: skip
    if failures or status.failed:
        for key, doc in status.failed.items():
            out.print(f"failed {doc.get('kind')} {doc.get('label') or key}: {doc.get('error')}", markup=False)
        if status.failed:
            out.print(f"logs: {sweep.state_dir / 'failures'}", markup=False)
