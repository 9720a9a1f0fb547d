"""Run one node from its JSON in this process: what a worker on another process or machine does.

``genies node FILE --store DIR [--data-dir DIR]`` (a hidden command) and ``run_node_file`` read a
node document (``Node.to_json``), rebuild a ``NodeEnv`` from the store and the data directory alone,
and resolve the node (reuse a verified result, or compute it under its key's lock). Dependencies must
already be in the store. Models are loaded by the name in the node and checked against its weights
hash; a plug-in intervention is imported from the module named in the node's settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from genies.errors import GeniesError
from genies.pipeline.executors import NodeOutcome, run_node
from genies.pipeline.graph import Node, NodeError
from genies.pipeline.kinds import NodeEnv, RunSpec
from genies.pipeline.store import ResultStore


def read_node(path: str | os.PathLike[str]) -> Node:
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise NodeError(f"node file not found: {p}") from None
    except UnicodeDecodeError:
        raise NodeError(f"node file {p} is not UTF-8 text") from None
    except OSError as exc:
        raise NodeError(f"cannot read node file {p}: {exc.strerror or exc}") from None
    return Node.loads(text, where=f"node file {p}")


def run_node_file(
    path: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    min_generation: int = 0,
    forced: int | None = None,
    log=print,
) -> NodeOutcome:
    """Resolve the node in ``path`` against ``store``; a failure raises its GeniesError."""
    node = read_node(path)
    spec = RunSpec(
        str(Path(store).expanduser()),
        None if data_dir is None else str(data_dir),
        min_generation=min_generation,
        forced=forced,
    )
    env = NodeEnv(ResultStore(spec.store, warn=lambda m: log(f"warning: {m}")), spec, log=log)
    out = run_node(node, env)
    if out.status == "dep_invalid":
        raise GeniesError(f"{node.label or node.key}: a dependency is missing from the store ({out.dep})")
    if out.status == "failed":
        out.raise_error(node)
    return out
