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
    from genies.cli import (
        browse,
        data,
        demo,
        evaluate,
        interventions,
        models,
        report,
        results,
        run,
        shifts,
        state,
        sweep,
        sweep_run,
    )

    app.add_typer(data.app, name="data", help="Import, list, show and validate GENIES distributions.")
    app.add_typer(shifts.app, name="shifts", help="List distribution shifts and suites.")
    app.add_typer(models.app, name="models", help="List and prepare models.")
    app.add_typer(
        interventions.app,
        name="interventions",
        help="List interventions (built-in and plug-ins) and their configs.",
    )
    app.add_typer(results.app, name="results", help="Show results tables and the paper's numbers.")
    evaluate.register(app)
    run.register(app)
    browse.register(app)
    sweep_run.register(app)
    demo.register(app)
    sweep.register(app)
    report.register(app)
    state.register(app)


_register()


INTERRUPTED = "interrupted: finished work is saved; rerun the same command to resume."


def _error_line(message: str) -> None:
    """``error: …`` on one line (messages from click may span lines)."""
    text = " ".join(message.split())
    err_console.print(f"[bold red]error:[/] {escape(text)}", markup=True, soft_wrap=True)


def _interrupted() -> int:
    err_console.print(INTERRUPTED, markup=False, soft_wrap=True)
    return 130


def _usage_error(exc: Exception) -> int:
    """Click's usage errors (typer bundles click as the private typer._click: recognised by interface)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `genies data` alone: the help is the answer
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    hint = f" (see '{path} --help')" if path and int(exc.exit_code) == 2 else ""  # type: ignore[attr-defined]
    _error_line(exc.format_message() + hint)  # type: ignore[attr-defined]
    return int(exc.exit_code)  # type: ignore[attr-defined]


def _is_click_error(exc: Exception) -> bool:
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def _run(argv: list[str] | None) -> int:
    try:
        rc = app(args=argv, prog_name="genies", standalone_mode=False)
    except GeniesError as exc:
        _error_line(str(exc))
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):  # click turns Ctrl-C into Abort in some places
        return _interrupted()
    except typer.Exit as exc:  # raised outside a command (e.g. --version)
        return exc.exit_code
    except BrokenPipeError:  # `genies … | head`: the reader left; stop quietly (typer mostly does)
        _silence_stdout()
        return 1
    except Exception as exc:
        if _is_click_error(exc):
            return _usage_error(exc)
        raise
    if rc == 130:  # typer answers a Ctrl-C inside a command by returning 130, silently: say so
        return _interrupted()
    return rc if isinstance(rc, int) else 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _set_sigint(handler: object) -> object | None:
    """Install a SIGINT handler (main thread only); returns the previous one."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, handler)  # type: ignore[arg-type]
    return previous


_IMPORT_FRAMES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while a command runs: a ``KeyboardInterrupt`` (work in progress is saved), except
    while a module is being imported. Import-time code of extension modules (torch, tokenizers) runs
    Python inside C++ callbacks, where an exception aborts the process (``terminate called after
    throwing pybind11::error_already_set``, exit -6). There, exit 130 at once: every store write is
    atomic, so finished work is kept and a rerun resumes."""
    import os

    f = frame
    while f is not None:
        if getattr(f, "f_code", None) is not None and f.f_code.co_filename in _IMPORT_FRAMES:
            try:
                os.write(2, b"interrupted: finished work is kept; run the command again to resume.\n")
            finally:
                os._exit(130)
        f = getattr(f, "f_back", None)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: returns the exit code (0 ok, 1 user error, 2 usage, 130 interrupt).

    Output streams are made encoding-safe first (a non-UTF-8 terminal never raises), and Ctrl-C is a
    ``KeyboardInterrupt`` while the command runs (the ``genies`` script exits quietly on one that
    comes earlier, during imports; see ``_genies_entry``), restored to the caller's handler after.
    """
    from genies.cli._console import safe_output_streams

    safe_output_streams()
    previous = _set_sigint(_interrupt)
    try:
        return _run(argv)
    except KeyboardInterrupt:  # a second Ctrl-C while an error was being reported
        return 130
    finally:
        if previous is not None:
            _set_sigint(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
