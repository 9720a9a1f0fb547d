"""Run job-graph nodes as Ray tasks (``--executor ray``; the optional extra ``genies[ray]``).

Each node is a ``ray.remote`` task asking for the node's resources (``num_gpus``, ``num_cpus``,
``memory``). A task runs ``run_node`` against the shared store, exactly as ``genies node`` does; a
Ray worker process keeps one ``NodeEnv`` per run, so consecutive nodes on the same worker share one
loaded model. ``address`` joins an existing cluster (``auto``, ``ray://head:10001``); without it a
local cluster is started for the run. Requests a cluster can never satisfy (a GPU on a CPU-only
local cluster, more memory than it has) are reduced to what it has, with a warning, rather than
left pending forever.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from genies.errors import ConfigError
from genies.pipeline.executors import NodeOutcome
from genies.pipeline.graph import Node
from genies.pipeline.kinds import NodeEnv


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'genies[ray]'") from None
    return ray


def _ray_node(spec_json: dict[str, Any], node_json: dict[str, Any]) -> dict[str, Any]:
    from genies.pipeline.executors_submitit import run_node_job

    return run_node_job(spec_json, node_json)


class RayExecutor:
    name = "ray"
    merges_counters = True

    def __init__(self, env: NodeEnv, options: Mapping[str, Any]) -> None:
        self.ray = _import_ray()
        self.env = env
        self.options = dict(options)
        self.capacity = int(self.options.get("max_in_flight") or 64)
        self._refs: dict[Any, str] = {}
        self._remote: Any = None
        self._started_here = False
        self._warned: set[str] = set()

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None:
        ray = self.ray
        if not ray.is_initialized():
            address = self.options.get("address")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address:
                kwargs["address"] = address
            elif self.options.get("num_cpus"):
                kwargs["num_cpus"] = int(self.options["num_cpus"])
            ray.init(**kwargs)
            self._started_here = True
        self._totals = ray.cluster_resources()
        self._remote = ray.remote(max_retries=1)(_ray_node)

    def _options(self, node: Node) -> dict[str, Any]:
        r = node.resources
        want = {
            "num_gpus": float(r.get("gpus", 0)) if r.get("model") else 0.0,
            "num_cpus": float(r.get("cpus", 1)),
            "memory": float(r.get("mem_gb", 0)) * 2**30,
        }
        have = {"num_gpus": self._totals.get("GPU", 0.0), "num_cpus": self._totals.get("CPU", 1.0),
                "memory": self._totals.get("memory", 0.0)}  # fmt: skip
        out = {}
        for k, v in want.items():
            if v > have[k]:
                if k not in self._warned:
                    self._warned.add(k)
                    self.env.log(
                        f"warning: ray cluster has {k}={have[k]:g}, nodes ask {v:g}; using what it has"
                    )
                v = have[k] if k != "num_cpus" else max(1.0, have[k])
            if v:
                out[k] = v
        return out

    def submit(self, node: Node) -> None:
        ref = self._remote.options(**self._options(node)).remote(self.env.spec.to_json(), node.to_json())
        self._refs[ref] = node.key

    def wait(self) -> list[NodeOutcome]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        outs = []
        for ref in ready:
            key = self._refs.pop(ref)
            try:
                out = NodeOutcome.from_json(self.ray.get(ref))
            except Exception as exc:  # the task's worker died, or Ray itself failed
                out = NodeOutcome(key, "failed", error=f"ray task failed: {type(exc).__name__}: {exc}"[:2000],
                                  error_type=type(exc).__name__, retryable=True, crashed=True)  # fmt: skip
            self.env.store.counters.add(out.counters)
            for m in out.messages if out.status != "failed" else []:
                self.env.log(m)
            outs.append(out)
        return outs

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for ref in list(self._refs):
                with contextlib.suppress(Exception):  # best effort on the way out
                    self.ray.cancel(ref, force=True)
        self._refs.clear()
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_here = False


def make_ray_executor(env: NodeEnv, workers: int, options: Mapping[str, Any]) -> RayExecutor:
    if env.model_loader is not None or env.load_distribution is not None:
        raise ConfigError("--executor ray needs models and data that Ray workers can load by name")
    opts = dict(options)
    if not opts.get("address") and not opts.get("num_cpus") and workers > 1:
        opts["num_cpus"] = workers
    return RayExecutor(env, opts)
