"""Executors run nodes; the scheduler submits those whose dependencies are done and collects outcomes.

The ``Executor`` protocol is deliberately small, so an executor on another engine (Slurm through
submitit, Ray) only has to move a node's JSON to a process that can see the store and the data, run
``run_node`` there and bring the ``NodeOutcome`` back::

    executor.capacity                      # how many nodes it runs at once (the scheduler keeps
                                           # at most that many in flight, earliest planned first)
    executor.start(preload=MODEL | None)   # once, before any node: load the model first (fail early)
    executor.submit(node)                  # run this node (its dependencies are done)
    executor.wait() -> [NodeOutcome]       # block until at least one submitted node finished
    executor.close(cancel=False)

Executors here (``genies run --executor local``, the default):

* ``LocalExecutor`` — in this process, one node after the other; the model is loaded once and shared
  by every node (``--workers 1``);
* ``PoolExecutor`` — ``--workers N`` processes on this machine (``concurrent.futures`` with the
  ``spawn`` start method); each worker loads the model once, on its first node that needs it. A worker
  that dies mid-node (killed, out of memory) is replaced and the node retried once; the store stays
  consistent because every write is atomic and every computation holds its key's lock.

``run_graph`` is the scheduler. A node's failure stops the run (``keep_going=False``, what
``genies run`` does) or only its dependents (``keep_going=True``); a node that finds its dependency
unusable (``DependencyInvalid``) gets the dependency recomputed and is retried.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from genies import errors as _errors
from genies.errors import ConfigError, GeniesError, UnknownNameError
from genies.pipeline.graph import Graph, Node
from genies.pipeline.kinds import DependencyInvalid, NodeEnv, RunSpec, resolve

#: Executors by name -> "module:factory"; a factory is ``factory(env, workers, options) -> Executor``
#: (``options``: the executor's own settings, e.g. a sweep's ``[executor.submitit]`` table). Imported
#: lazily, so an optional engine (Ray) is needed only when it is used.
EXECUTOR_FACTORIES: dict[str, str] = {
    "submitit": "genies.pipeline.executors_submitit:make_submitit_executor",
    "ray": "genies.pipeline.executors_ray:make_ray_executor",
}
PLANNED_EXECUTORS: tuple[str, ...] = ()
EXECUTORS = ("local", *EXECUTOR_FACTORIES)


@dataclass
class NodeOutcome:
    """What running one node gave: status ``computed`` / ``reused`` / ``failed`` / ``dep_invalid``."""

    key: str
    status: str
    error: str | None = None
    error_type: str | None = None
    dep: str | None = None
    retryable: bool = False
    crashed: bool = False  # its worker process died (this node, or another one in the same pool)
    counters: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("exception")
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> NodeOutcome:
        return cls(**{k: v for k, v in doc.items() if k != "exception"})

    def raise_error(self, node: Node) -> None:
        """Raise this failure as the GeniesError it was (its class, when it is one of genies')."""
        if isinstance(self.exception, BaseException):
            raise self.exception
        cls = getattr(_errors, self.error_type or "", None)
        message = self.error or "failed"
        if isinstance(cls, type) and issubclass(cls, GeniesError) and cls is not UnknownNameError:
            raise cls(message)
        raise GeniesError(f"{node.label or node.key} failed: {message}")


def run_node(node: Node, env: NodeEnv, *, checked: bool = False, catch_all: bool = False) -> NodeOutcome:
    """Resolve one node in this process and describe what happened (see ``kinds.resolve``).

    GeniesErrors become failed outcomes (the exception attached); with ``catch_all`` (worker
    processes) any other exception does too, its traceback in ``messages``.
    """
    t0 = time.perf_counter()
    before = env.counters.as_dict()
    out = NodeOutcome(node.key, "failed")
    try:
        out.status = resolve(node, env, checked=checked)
    except DependencyInvalid as exc:
        out.status, out.dep, out.error = "dep_invalid", exc.key, exc.message
    except GeniesError as exc:
        out.error, out.error_type, out.exception = str(exc), type(exc).__name__, exc
    except Exception as exc:
        if not catch_all:
            raise
        out.error, out.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
        out.messages.extend(traceback.format_exc().rstrip().splitlines())
    after = env.counters.as_dict()
    out.counters = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


class Executor(Protocol):
    name: str
    capacity: int

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None: ...

    def submit(self, node: Node) -> None: ...

    def wait(self) -> list[NodeOutcome]: ...

    def close(self, *, cancel: bool = False) -> None: ...


class LocalExecutor:
    """Runs nodes in this process, sequentially, sharing one NodeEnv (and so one loaded model)."""

    name = "local"
    capacity = 1

    def __init__(self, env: NodeEnv) -> None:
        self.env = env
        self._queue: deque[Node] = deque()

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None:
        if preload is not None:
            self.env.session(preload).model()

    def submit(self, node: Node) -> None:
        self._queue.append(node)

    def wait(self) -> list[NodeOutcome]:
        if not self._queue:
            return []
        return [run_node(self._queue.popleft(), self.env, checked=True)]

    def close(self, *, cancel: bool = False) -> None:
        self._queue.clear()


# ---------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def _init_worker(spec_json: dict[str, Any]) -> None:
    """Set up a pool worker: one NodeEnv for the worker's whole life (so one model load)."""
    from genies.pipeline.store import ResultStore

    spec = RunSpec.from_json(spec_json)
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    import importlib

    for mod in spec.plugin_modules:
        importlib.import_module(mod)
    messages: list[str] = []
    store = ResultStore(spec.store, warn=lambda m: messages.append(f"warning: {m}"))
    _WORKER["messages"] = messages
    _WORKER["env"] = NodeEnv(store, spec, log=messages.append)
    _WORKER["reported"] = store.counters.as_dict()


def _worker_run(node_json: dict[str, Any]) -> dict[str, Any]:
    env: NodeEnv = _WORKER["env"]
    messages: list[str] = _WORKER["messages"]
    messages.clear()
    out = run_node(Node.from_json(node_json), env, checked=True, catch_all=True)
    out.messages = [*messages, *out.messages]
    # everything counted since the last report (a preload's model load included)
    now, last = env.counters.as_dict(), _WORKER["reported"]
    out.counters = {k: now[k] - last[k] for k in now if now[k] != last[k]}
    _WORKER["reported"] = now
    return out.to_json()


def _worker_preload(model: dict[str, Any]) -> dict[str, Any]:
    env: NodeEnv = _WORKER["env"]
    try:
        env.session(model).model()
    except GeniesError as exc:
        return {"error": str(exc), "error_type": type(exc).__name__}
    return {}


def _crashed(key: str) -> NodeOutcome:
    return NodeOutcome(
        key, "failed", error="a worker process died while running it", retryable=True, crashed=True
    )


class PoolExecutor:
    """``workers`` processes on this machine; a dead worker is replaced and its node retried."""

    name = "local"

    def __init__(self, spec: RunSpec, workers: int) -> None:
        self.spec, self.workers = spec, workers
        self.capacity = workers
        self._pool: Any = None
        self._futures: dict[Any, str] = {}

    def _get_pool(self) -> Any:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.spec.to_json(),),
            )
        return self._pool

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None:
        if preload is None:
            return
        result = self._get_pool().submit(_worker_preload, dict(preload)).result()
        if result:
            NodeOutcome("", "failed", error=result["error"], error_type=result["error_type"]).raise_error(
                Node("", "state", {"kind": "state"}, label="loading the model")
            )

    def submit(self, node: Node) -> None:
        self._futures[self._get_pool().submit(_worker_run, node.to_json())] = node.key

    def wait(self) -> list[NodeOutcome]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures
        from concurrent.futures.process import BrokenProcessPool

        if not self._futures:
            return []
        done, _ = wait_futures(list(self._futures), return_when=FIRST_COMPLETED)
        outcomes = []
        broken = False
        for fut in done:
            key = self._futures.pop(fut)
            try:
                outcomes.append(NodeOutcome.from_json(fut.result()))
            except BrokenProcessPool:
                broken = True
                outcomes.append(_crashed(key))
        if broken:  # every other in-flight node died with the pool: collect them, start a new pool
            for fut in list(self._futures):
                outcomes.append(_crashed(self._futures.pop(fut)))
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return outcomes

    def close(self, *, cancel: bool = False) -> None:
        if self._pool is None:
            return
        if cancel:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._futures.clear()


def check_executor(name: str, workers: int) -> None:
    """One-line errors for ``--executor`` and ``--workers`` before any work."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be at least 1 (got {workers})")
    if name in PLANNED_EXECUTORS:
        raise ConfigError(
            f"executor {name!r} is not available in this version of genies; use --executor local"
        )
    if name not in EXECUTORS:
        raise UnknownNameError("executor", name, EXECUTORS)


def make_executor(
    name: str, workers: int, env: NodeEnv, *, options: Mapping[str, Any] | None = None
) -> Executor:
    check_executor(name, workers)
    if name != "local":
        import importlib

        module, _, factory = EXECUTOR_FACTORIES[name].partition(":")
        return getattr(importlib.import_module(module), factory)(env, workers, dict(options or {}))
    if workers == 1:
        return LocalExecutor(env)
    if env.model_loader is not None or env.load_distribution is not None:
        raise ConfigError("--workers > 1 needs models and data that worker processes can load by name")
    cores = os.cpu_count() or 1
    spec = RunSpec.from_json({**env.spec.to_json(), "threads": env.spec.threads or max(1, cores // workers)})
    return PoolExecutor(spec, workers)


# ---------------------------------------------------------------- the scheduler


def run_graph(
    graph: Graph,
    todo: Iterable[str],
    executor: Executor,
    *,
    on_outcome: Callable[[Node, NodeOutcome], None] = lambda node, out: None,
    keep_going: bool = False,
    max_attempts: int = 2,
    preload: Mapping[str, Any] | None = None,
) -> dict[str, NodeOutcome]:
    """Run the ``todo`` nodes of ``graph`` (deps outside ``todo`` are done) and return their outcomes.

    Ready nodes are submitted earliest-planned first, at most ``executor.capacity`` at a time, so the
    local executor runs the graph in plan order (baseline, target-tuned references, then source by
    source, as upstream did) and a pool streams results. When a worker process dies, every node in
    flight in its pool fails with it and nobody can tell which one killed it: those nodes are retried
    one at a time ("suspects"), and only a node that crashes a worker while running alone uses up an
    attempt.
    """
    import heapq

    position = {k: i for i, k in enumerate(graph.nodes)}
    order = [k for k in graph.nodes if k in set(todo)]
    pending = set(order)
    waiting = {k: {d for d in graph[k].deps if d in pending} for k in order}
    dependents: dict[str, set[str]] = {k: set() for k in graph.nodes}
    for k in order:
        for d in graph[k].deps:
            dependents[d].add(k)
    attempts: Counter[str] = Counter()
    outcomes: dict[str, NodeOutcome] = {}
    failed: set[str] = set()
    ready: list[tuple[int, str]] = [(position[k], k) for k in order if not waiting[k]]
    heapq.heapify(ready)
    queued: set[str] = {k for _, k in ready}
    in_flight: set[str] = set()
    suspects: set[str] = set()
    solo: set[str] = set()

    def make_ready(k: str) -> None:
        if k not in queued and k not in in_flight:
            heapq.heappush(ready, (position[k], k))
            queued.add(k)

    def fail_dependents(key: str) -> None:
        for d in dependents[key]:
            if d in pending and d not in failed:
                failed.add(d)
                pending.discard(d)
                fail_dependents(d)

    try:
        if order:
            executor.start(preload=preload)
        while ready or in_flight:
            while ready and len(in_flight) < max(1, executor.capacity) and not (solo & in_flight):
                k = ready[0][1]
                if k in suspects and in_flight:
                    break  # a suspect runs alone: wait for the others to finish
                heapq.heappop(ready)
                queued.discard(k)
                attempts[k] += 1
                in_flight.add(k)
                if k in suspects:
                    solo.add(k)
                executor.submit(graph[k])
            for out in executor.wait():
                k = out.key
                in_flight.discard(k)
                alone = k in solo
                solo.discard(k)
                node = graph[k]
                if out.crashed and not alone and attempts[k] <= max_attempts:
                    attempts[k] -= 1  # maybe a bystander: retry it alone, without using an attempt
                    suspects.add(k)
                    make_ready(k)
                    continue
                on_outcome(node, out)
                if out.status in ("computed", "reused"):
                    outcomes[k] = out
                    pending.discard(k)
                    for d in dependents[k]:
                        waiting.get(d, set()).discard(k)
                        if d in pending and not waiting[d]:
                            make_ready(d)
                elif out.status == "dep_invalid" and out.dep in graph and attempts[k] < max_attempts:
                    dep = out.dep
                    waiting[k] = {dep}
                    dependents[dep].add(k)
                    pending.add(dep)
                    waiting[dep] = set()
                    make_ready(dep)
                elif out.retryable and attempts[k] < max_attempts:
                    make_ready(k)
                else:
                    outcomes[k] = out
                    failed.add(k)
                    pending.discard(k)
                    if not keep_going:
                        executor.close(cancel=False)
                        out.raise_error(node)
                    fail_dependents(k)
    except BaseException:
        executor.close(cancel=True)
        raise
    executor.close()
    return outcomes
