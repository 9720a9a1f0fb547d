"""`genies browse`: a local, read-only web browser for the data, the shifts, evaluations and results."""

from __future__ import annotations

import time
from pathlib import Path

import typer

DEFAULT_PORT = 8765


def register(app: typer.Typer) -> None:
    @app.command("browse")
    def browse(
        port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="Port to listen on (0: any free port)."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to bind; the default serves this machine only."
        ),
        data_dir: Path | None = typer.Option(
            None, "--data-dir", help="Data store (default: $GENIES_DATA_DIR or ~/.cache/genies/data)."
        ),
        store: Path | None = typer.Option(
            None,
            "--store",
            help="Result store with evaluations (default: $GENIES_STORE_DIR or ~/.cache/genies/store).",
        ),
        results: Path | None = typer.Option(
            None, "--results", help="Folder searched for `genies run` outputs \\[default: ./genies-results]."
        ),
    ) -> None:
        """Browse distributions, shifts, per-pair p(correct) and results in a local web page (read-only)."""
        from genies.paths import data_dir as resolve_data_dir
        from genies.paths import store_dir
        from genies.web import ServeError, serve

        started = time.perf_counter()
        if results is not None and not results.is_dir():
            raise ServeError(f"--results {results} is not a folder")
        serve(
            data_dir=resolve_data_dir(data_dir),
            store=store_dir(store),
            results_dir=results if results is not None else Path("genies-results"),
            host=host,
            port=port,
            started=started,
        )
