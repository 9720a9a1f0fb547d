"""The ``genies run`` pipeline: a job graph of serialisable nodes, a verifying store, executors.

Modules, bottom up: ``graph`` (nodes as plain JSON), ``nodes`` (what each kind's inputs mean),
``store`` (the on-disk result store and its checks), ``kinds`` (``resolve``: a node's verified result,
or compute it under its lock), ``executors`` (the ``Executor`` protocol, local and process-pool
executors, the scheduler), ``config`` (per-role configs), ``plan`` (shifts → graph), ``suite`` (the
whole run as one call), ``worker`` (run one node from its JSON). docs/pipeline.md is the reference.
"""

from genies.pipeline.graph import Graph, Node
from genies.pipeline.store import ResultStore, StoreCounters
from genies.pipeline.suite import RunOptions, RunOutcome, prepare_run, run_suite

__all__ = [
    "Graph",
    "Node",
    "ResultStore",
    "RunOptions",
    "RunOutcome",
    "StoreCounters",
    "prepare_run",
    "run_suite",
]
