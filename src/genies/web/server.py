"""Serve the browser app with uvicorn on a socket bound here (clean errors, ``--port 0``)."""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from genies.errors import GeniesError
from genies.web.hosts import LOCAL_HOSTS

ANY_ADDRESS = ("0.0.0.0", "::", "")


class ServeError(GeniesError):
    """The server cannot start (address in use, unknown host, bad port)."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port), or a one-line ServeError.

    Binding here, before uvicorn starts, turns "address in use" into a clear message instead of
    uvicorn's log line and exit, and lets ``--port 0`` report the port it got.
    """
    if not 0 <= port <= 65535:
        raise ServeError(f"--port must be between 0 and 65535, not {port}")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on host {host!r}: {exc.strerror or exc}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is already in use",
                hint="pass another --port, or --port 0 for any free one",
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers the app accepts: the local names and ``host`` (None: any, for 0.0.0.0/::)."""
    if host in ANY_ADDRESS:
        return None
    return [*LOCAL_HOSTS, host, f"[{host}]" if ":" in host else host]


def serve(
    *,
    data_dir: Path,
    store: Path | None,
    results_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    started: float | None = None,
    echo: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> None:
    """Index the data, bind ``host:port`` and serve until interrupted (Ctrl-C stops it cleanly)."""
    import uvicorn

    from genies.web.app import create_app

    app = create_app(data_dir, store, results_dir, allowed_hosts=allowed_hosts(host))
    sock = bind_socket(host, port)
    bound = sock.getsockname()[1]
    browser = app.state.browser
    shown = f"[{host}]" if ":" in host else host
    took = f" in {time.perf_counter() - started:.2f} s" if started is not None else ""
    echo(
        f"genies browse: {len(browser.data.infos)} distributions from {data_dir}; "
        f"evaluations from {store}; results from {results_dir}"
    )
    if host in ANY_ADDRESS:
        echo(
            "warning: listening on every network interface; anyone who can reach this machine can read the data"
        )
    echo(f"ready{took}: http://{shown or '0.0.0.0'}:{bound}/  (read-only; Ctrl-C to stop)")
    # Read the result store's evaluations while the first pages are requested (pages that need them
    # wait on the index's lock instead of reading the store themselves).
    threading.Thread(target=browser.evaluations.refresh, name="genies-evaluations", daemon=True).start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=2,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
