"""The ``genies`` command line (typer + rich).

Each command group lives in its own module; this file wires them together and turns every
``GeniesError`` into a one-line message with a non-zero exit code (never a traceback).
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from genies import __version__
from genies.errors import GeniesError

err_console = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="genies",
    help="GENIES: measure how reward models generalize human feedback across distribution shifts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genies {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """GENIES: train on a source distribution, test on a shifted target, compare with the paper."""


def _register() -> None:
    from genies.cli import browse, data, evaluate, models, results, run, shifts

    app.add_typer(data.app, name="data", help="Import, list, show and validate GENIES distributions.")
    app.add_typer(shifts.app, name="shifts", help="List distribution shifts and suites.")
    app.add_typer(models.app, name="models", help="List and prepare models.")
    app.add_typer(results.app, name="results", help="Show results tables and the paper's numbers.")
    evaluate.register(app)
    run.register(app)
    browse.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: returns the exit code (0 ok, 1 user error, 2 usage, 130 interrupt)."""
    try:
        rc = app(args=argv, standalone_mode=False)
    except GeniesError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print(
            "[bold red]interrupted[/]: finished work is saved; rerun the same command to resume."
        )
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 1
    except Exception as exc:
        # Usage errors from the click that typer bundles (typer._click) are not importable publicly:
        # recognise them by their interface and let them print their own usage message.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
