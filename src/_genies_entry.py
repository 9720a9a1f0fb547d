"""The ``genies`` console script: Ctrl-C handling that is in place before anything heavy is imported.

Importing the CLI takes a while (numpy, pydantic, typer, rich); a Ctrl-C during that time would print a
``KeyboardInterrupt`` traceback from whatever module was being imported. This module lives outside
the ``genies`` package (importing anything inside it would first import the package root) and imports
only the standard library, so its handler is installed within milliseconds of the interpreter
starting. ``genies.cli.main`` takes over Ctrl-C while the command runs (work in progress is saved
and the run can be resumed); after it returns, Ctrl-C is ignored and the process exits with main's code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

EARLY_MESSAGE = b"interrupted: nothing was done.\n"


def _interrupted_early(signum: int, frame: object) -> None:
    try:
        os.write(2, EARLY_MESSAGE)
    finally:
        os._exit(130)  # nothing has started: no state to save, no output to flush


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`genies … | head`): nothing left to say
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def main() -> int:
    signal.signal(signal.SIGINT, _interrupted_early)
    from genies.cli import main as cli_main

    rc = cli_main()
    # Ignored, not handled: the interpreter's finalisation resets Python-level handlers to SIG_DFL,
    # and a Ctrl-C arriving then would kill the process by signal (exit -2) after its work was done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _flush()
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
