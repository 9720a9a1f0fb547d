"""`genies interventions list|show`: what can be passed to ``--intervention``, where each one comes
from (built-in, a pip-installed plug-in's entry point, or registered in code), what it needs, and
its config keys (``--set intervention.KEY=VALUE``)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True)


def _default(field) -> str:
    return "required" if field.required else json.dumps(field.default, ensure_ascii=False)


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(
        False, "--json", help="Print {interventions: [...], not_loaded: {name: error}} as JSON."
    ),
) -> None:
    """Every registered intervention: source, summary, needs; plug-ins that failed to load, with why."""
    from rich.markup import escape
    from rich.table import Table

    from genies.cli._console import make_console
    from genies.interventions.catalog import catalog

    infos, problems = catalog()
    if as_json:
        doc = {"interventions": [i.to_json(with_fields=False) for i in infos], "not_loaded": problems}
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    console = make_console(piped_width=200)
    table = Table(title="genies interventions (genies interventions show NAME for the config keys)")
    for col in ("name", "from", "description", "needs"):
        table.add_column(col, overflow="fold")
    for info in infos:
        needs = info.needs.label() if info.needs is not None else f"[dim]{escape(info.needs_note)}[/]"
        table.add_row(info.name, escape(info.origin.label()), escape(info.summary), needs)
    console.print(table)
    if problems:
        console.print(f"[bold red]{len(problems)} plug-in(s) not loaded:[/]")
        for name, why in problems.items():
            console.print(f"  [red]{escape(name)}[/]: {escape(why)}", soft_wrap=True)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help="An intervention name (see `genies interventions list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the description and config fields as JSON."),
) -> None:
    """One intervention: source, summary, needs, and its config fields with types, defaults and
    descriptions (unknown names get the closest matches and exit 1)."""
    from rich.markup import escape
    from rich.table import Table

    from genies.cli._console import make_console
    from genies.interventions.catalog import describe

    info = describe(name)
    if as_json:
        typer.echo(json.dumps(info.to_json(), indent=2, ensure_ascii=False))
        return
    console = make_console(piped_width=200)
    console.print(f"[bold]{escape(info.name)}[/] — {escape(info.summary)}", soft_wrap=True)
    console.print(f"from: {escape(info.origin.label())}", soft_wrap=True)
    needs = info.needs.label() if info.needs is not None else info.needs_note
    console.print(f"needs: {escape(needs)}", soft_wrap=True)
    if not info.fields:
        console.print("config: no keys")
        return
    table = Table(
        title="config keys (--set intervention.KEY=VALUE, or \\[intervention] in a --config TOML file)"
    )
    for col in ("key", "type", "default", "constraints", "in cache key", "description"):
        table.add_column(col, overflow="fold")
    for f in info.fields:
        table.add_row(
            f.name,
            escape(f.type),
            escape(_default(f)),
            escape(f.constraints),
            "no (result-neutral)" if f.result_neutral else "yes",
            escape(f.description),
        )
    console.print(table)
