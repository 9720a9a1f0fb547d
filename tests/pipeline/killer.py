"""Run the ``genies`` CLI in this process and stop it at a known point (test helper, not genies code).

``python killer.py N[:INT] genies-args…`` sends this process SIGKILL (or SIGINT with ``:INT``, a
deterministic Ctrl-C) right after the N-th completed store write of a state or an evaluation. The
kill-and-resume tests use it; the production store has no such hook.
"""

from __future__ import annotations

import os
import signal
import sys

from genies.cli import main
from genies.pipeline.store import ResultStore


def _install(spec: str) -> None:
    count, _, name = spec.partition(":")
    target, sig = int(count), signal.SIGINT if name.upper() in ("INT", "SIGINT") else signal.SIGKILL
    writes = [0]

    def counted(method):
        def wrapper(self, *args, **kwargs):
            out = method(self, *args, **kwargs)
            writes[0] += 1
            if writes[0] == target:
                os.kill(os.getpid(), sig)
            return out

        return wrapper

    ResultStore.save_state = counted(ResultStore.save_state)  # type: ignore[method-assign]
    ResultStore.save_evaluation = counted(ResultStore.save_evaluation)  # type: ignore[method-assign]


if __name__ == "__main__":
    _install(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
