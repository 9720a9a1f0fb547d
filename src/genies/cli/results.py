"""`genies results`: the paper's published numbers (import, reproduce) and results tables.

Each command is a plain function registered on ``app``; shared options (``--store``) are built by
the small factories below, so a new command (e.g. ``table``) only adds one decorated function.
Heavy imports (pandas, numpy, the store) happen inside the commands to keep ``genies --help`` fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genies.cli._console import make_console

if TYPE_CHECKING:
    pass

app = typer.Typer(
    no_args_is_help=True,
    help="Show results tables and the paper's numbers.",
    rich_markup_mode="rich",
)


def store_option() -> Path | None:
    """``--store DIR``: the result store (default: $GENIES_STORE_DIR or ~/.cache/genies/store)."""
    return typer.Option(
        None, "--store", help="Result store folder (default: $GENIES_STORE_DIR or ~/.cache/genies/store)."
    )


@app.command("import-upstream")
def import_upstream_cmd(
    path: Path = typer.Argument(
        ...,
        help="The upstream results/ folder (or the repository holding it), or the published-results .tar.gz.",
        show_default=False,
    ),
    store: Path | None = store_option(),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Import the paper's raw evaluations into the store as read-only records (re-import replaces)."""
    from rich.table import Table

    from genies.results.upstream import import_upstream

    summary = import_upstream(path, store=store, progress=progress)
    console = make_console(piped_width=120)
    table = Table(title="imported paper evaluations", title_justify="left")
    table.add_column("model")
    table.add_column("intervention")
    table.add_column("records", justify="right")
    for (label, iv), n in sorted(summary.records.items()):
        table.add_row(label, iv, str(n))
    console.print(table)
    ttc = ", ".join(f"{label} {n}" for label, n in sorted(summary.ttc.items())) or "none"
    console.print(f"target-tuned capabilities: {ttc}")
    if summary.skipped:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items()))
        console.print(f"skipped files: {skipped}")
    console.print(
        f"{summary.n_records} records imported into {summary.store} in {summary.seconds:.1f} s",
        soft_wrap=True,
    )


@app.command("reproduce-paper")
def reproduce_paper_cmd(
    suite: str | None = typer.Option(
        None, "--suite", "-s", help="genies (GENIES.csv) or all-paper (all.csv); default: both."
    ),
    out: Path = typer.Option(
        Path("generalization_metrics"),
        "--out",
        "-o",
        help="Output folder: OUT/<model>/<intervention>/<suite>.csv.",
    ),
    store: Path | None = store_option(),
) -> None:
    """Rebuild the paper's generalization_metrics CSVs from the imported raw evaluations alone."""
    from genies.results.upstream import PAPER_SUITES, check_paper_suite, reproduce_paper

    suites = [check_paper_suite(suite)] if suite is not None else list(PAPER_SUITES)
    summary = reproduce_paper(out, suites, store=store)
    console = make_console(piped_width=120)
    n = len(summary.files)
    console.print(
        f"wrote {n} table{'' if n == 1 else 's'} ({summary.rows} rows) under {summary.out}", soft_wrap=True
    )
    if summary.missing_cells:
        console.print(
            f"[yellow]{summary.missing_cells} cells are empty: their raw evaluation was not imported[/]"
        )


@app.command("table")
def table_cmd(
    paths: list[Path] | None = typer.Argument(
        None,
        help="<suite>.json or .csv files written by `genies run`, or folders holding them "
        "\\[default: ./genies-results].",
        show_default=False,
    ),
    suite: str | None = typer.Option(None, "--suite", "-s", help="Only results of this suite (e.g. genies)."),
    as_json: bool = typer.Option(False, "--json", help="Print rows, category means and suite means as JSON."),
    paper: str | None = typer.Option(
        None, "--paper", help="Show the paper's numbers for the same shifts beside each row (e.g. llama-30b)."
    ),
    store: Path | None = store_option(),
) -> None:
    """Results tables: one row per shift, then per-category means and the suite mean."""
    from genies.report.table import show

    show(
        list(paths or []),
        suite=suite,
        as_json=as_json,
        paper_model=paper,
        store=store,
        console=None if as_json else make_console(piped_width=200),
    )
