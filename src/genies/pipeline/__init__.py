"""The ``genies run`` pipeline: plan a suite, reuse or compute evaluations in the result store, write outputs.

Modules: ``config`` (per-role configs), ``plan`` (shifts → deduplicated states/evaluations and their
cache keys), ``store`` (the on-disk result store), ``runner`` (execution with locks, lazy model,
progress), ``outputs`` (CSV/JSON), ``suite`` (the whole run as one call).
"""

from genies.pipeline.store import ResultStore, StoreCounters
from genies.pipeline.suite import RunOptions, RunOutcome, prepare_run, run_suite

__all__ = ["ResultStore", "RunOptions", "RunOutcome", "StoreCounters", "prepare_run", "run_suite"]
