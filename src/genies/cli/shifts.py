"""`genies shifts`: list the distribution shifts of a suite, and the suites themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genies.cli._console import make_console

if TYPE_CHECKING:
    pass

app = typer.Typer(
    no_args_is_help=True,
    help="List distribution shifts and suites.",
    rich_markup_mode="rich",
)

_SUITE_HELP = (
    "Built-in suite (genies, all, all-paper, test, extreme, probing or a category name; "
    "see `genies shifts suites`) or the path of a JSON shift file in the upstream format."
)


@app.command("list")
def list_shifts(
    suite: str = typer.Option("all", "--suite", "-s", help=_SUITE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list (re-readable as a suite file)."),
    check: bool = typer.Option(
        False, "--check", help="Fail unless every distribution the suite names is in the data store."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Data store to check against (implies --check); default: $GENIES_DATA_DIR."
    ),
) -> None:
    """List the shifts of a suite: source → target, target reference, category and group."""
    from rich.table import Table

    from genies.shifts import get_suite, involved_distributions, unique_shifts

    shifts = get_suite(suite, data_dir=data_dir, check_data=check or data_dir is not None)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in shifts], indent=2))
        return

    show_label = any(s.label is not None and s.label != s.group for s in shifts)
    table = Table(title=f"shifts in {suite}", title_justify="left")
    table.add_column("#", justify="right", style="dim")
    for col in ("source", "target", "reference", "category", "group") + (("label",) if show_label else ()):
        table.add_column(col, overflow="fold", style="cyan" if col == "reference" else None)
    for i, s in enumerate(shifts, 1):
        row = [
            str(i),
            s.source,
            s.target,
            "" if s.reference == s.target else s.reference,
            s.category,
            s.group or "",
        ]
        if show_label:
            row.append(s.label or "")
        table.add_row(*row)

    n_unique = len(unique_shifts(shifts))
    count = (
        f"{len(shifts)} shifts"
        if n_unique == len(shifts)
        else f"{len(shifts)} rows ({n_unique} unique shifts)"
    )
    n_cat = len({s.category for s in shifts})
    notes = [
        f"{count} · {n_cat} categor{'y' if n_cat == 1 else 'ies'} · {len(involved_distributions(shifts))} distributions"
    ]
    if any(s.reference != s.target for s in shifts):
        notes.append(
            "reference: the target-tuned capability's distribution, shown where it is not the target"
        )
    if show_label:
        n_diff = sum(s.label is not None and s.label != s.group for s in shifts)
        notes.append(
            f"label: the upstream suite file's own label; it disagrees with the group for {n_diff} shift(s)"
        )
    table.caption = "\n".join(notes)
    table.caption_justify = "left"
    make_console().print(table)


@app.command("suites")
def list_suite_names(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {name, shifts, description}."),
) -> None:
    """List the built-in suites with their number of shifts."""
    from rich.table import Table

    from genies.shifts import describe_suite, get_suite, list_suites

    rows = [(name, len(get_suite(name)), describe_suite(name)) for name in list_suites()]
    if as_json:
        typer.echo(json.dumps([{"name": n, "shifts": k, "description": d} for n, k, d in rows], indent=2))
        return
    table = Table(title="shift suites", title_justify="left")
    table.add_column("suite")
    table.add_column("shifts", justify="right")
    table.add_column("description")
    for name, k, desc in rows:
        table.add_row(name, str(k), desc)
    table.caption = "--suite also accepts the path of a JSON shift file (upstream format)"
    table.caption_justify = "left"
    make_console().print(table)
