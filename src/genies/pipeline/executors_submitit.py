"""Run job-graph nodes as Slurm jobs through submitit (``--executor submitit``).

Each node is one job: the job gets the node's JSON and the run's ``RunSpec`` (store, data dir,
generation), rebuilds a ``NodeEnv`` from the shared store alone and calls ``run_node`` — the same
code path as ``genies node``. Dependencies are handled as waves: the scheduler (``run_graph``) only
submits nodes whose dependencies are done, so no Slurm dependency chain can be left dangling when
a node fails. The ready nodes of one wait are submitted together, grouped by their resources, as one
job array per group (``array_parallelism`` caps how many of an array run at once).

Preemption and timeouts: a job is a ``submitit.helpers.Checkpointable``, so when Slurm preempts it or
its time limit nears, submitit requeues the same node (up to ``max_requeues`` times). The node's
key lock is released when its process dies (``fcntl`` locks), and a training intervention resumes
from ``ctx.checkpoint_dir``, which survives the kill.

``cluster``: ``slurm`` (default where ``sbatch`` exists), ``local`` (submitit's LocalExecutor: real
subprocesses on this machine — what the tests use) or ``debug`` (in this process, for a debugger).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import submitit

from genies.errors import ConfigError
from genies.pipeline.executors import NodeOutcome
from genies.pipeline.graph import Node
from genies.pipeline.kinds import NodeEnv, RunSpec

_JOB_ENV: dict[str, Any] = {}


def _env_for(spec_json: dict[str, Any]) -> NodeEnv:
    """One NodeEnv per process and spec (the debug cluster runs many jobs in one process)."""
    import importlib
    import json

    from genies.pipeline.store import ResultStore

    key = json.dumps(spec_json, sort_keys=True)
    if key not in _JOB_ENV:
        spec = RunSpec.from_json(spec_json)
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        for mod in spec.plugin_modules:
            importlib.import_module(mod)
        messages: list[str] = []
        store = ResultStore(spec.store, warn=lambda m: messages.append(f"warning: {m}"))
        _JOB_ENV[key] = (NodeEnv(store, spec, log=messages.append), messages)
    return _JOB_ENV[key]


def run_node_job(spec_json: dict[str, Any], node_json: dict[str, Any]) -> dict[str, Any]:
    """Run one node in a job process; returns its ``NodeOutcome`` JSON (counters of this job only)."""
    from genies.pipeline.executors import run_node

    env, messages = _env_for(spec_json)
    messages.clear()
    before = env.counters.as_dict()
    out = run_node(Node.from_json(node_json), env, checked=False, catch_all=True)
    after = env.counters.as_dict()
    out.counters = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    out.messages = [*messages, *out.messages]
    return out.to_json()


class NodeJob(submitit.helpers.Checkpointable):
    """A node as a requeueable job: on preemption or timeout, submitit resubmits the same call."""

    def __call__(self, spec_json: dict[str, Any], node_json: dict[str, Any]) -> dict[str, Any]:
        return run_node_job(spec_json, node_json)


def _tail(path: Any, n: int = 40) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-n:]
    except OSError:
        return []


class SubmititExecutor:
    """Nodes as submitit jobs (Slurm, or local subprocesses with ``cluster="local"``)."""

    name = "submitit"
    merges_counters = True

    def __init__(self, env: NodeEnv, options: Mapping[str, Any]) -> None:
        self.env = env
        self.options = dict(options)
        if self.options.get("folder"):
            folder = Path(self.options["folder"])
        else:  # genies run: job logs and pickles beside the caches, not inside the result store
            from genies.paths import cache_dir

            folder = cache_dir() / "submitit"
        cluster = self.options.get("cluster")
        if cluster not in (None, "slurm", "local", "debug"):
            raise ConfigError(f"--cluster must be slurm, local or debug (got {cluster!r})")
        self.cluster = cluster
        self.folder = folder
        self._executor = submitit.AutoExecutor(
            folder=str(folder / "%j"), cluster=cluster, slurm_max_num_timeout=int(self.options.get("max_requeues", 3))
        ) if cluster in (None, "slurm") else submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)  # fmt: skip
        self.local = self._executor.cluster in ("local", "debug")
        parallel = int(self.options.get("array_parallelism") or 32)
        self.capacity = int(self.options.get("max_in_flight") or parallel)
        self.poll = float(self.options.get("poll_seconds") or 2.0)
        if self.local:
            self.poll = min(self.poll, 0.2)
        self._buffer: list[Node] = []
        self._jobs: dict[str, Any] = {}

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None:
        """Jobs load their own models; nothing to preload here."""

    def _parameters(self, node: Node) -> dict[str, Any]:
        r, o = node.resources, self.options
        params: dict[str, Any] = {
            "name": f"genies-{node.kind}",
            "timeout_min": int(o.get("timeout_min") or max(1, round(float(r.get("minutes", 60))))),
            "cpus_per_task": int(r.get("cpus", 1)),
        }
        if self.local:
            return params  # no GPUs to request here; memory is not enforced by local jobs
        gpus = o.get("gpus_per_node")
        params["gpus_per_node"] = int(r.get("gpus", 0) if gpus is None else gpus) if r.get("model") else 0
        params["mem_gb"] = float(r.get("mem_gb", 16))
        params["slurm_array_parallelism"] = int(o.get("array_parallelism") or 32)
        for key in ("partition", "account", "qos"):
            if o.get(key):
                params[f"slurm_{key}"] = o[key]
        if o.get("setup"):
            params["slurm_setup"] = list(o["setup"])
        if o.get("additional"):
            params["slurm_additional_parameters"] = dict(o["additional"])
        return params

    def submit(self, node: Node) -> None:
        self._buffer.append(node)

    def _flush(self) -> None:
        """Submit the buffered nodes: one job array per set of resource parameters."""
        import json

        groups: dict[str, list[Node]] = {}
        for node in self._buffer:
            groups.setdefault(json.dumps(self._parameters(node), sort_keys=True), []).append(node)
        self._buffer = []
        spec = self.env.spec.to_json()
        for params_json, nodes in groups.items():
            self._executor.update_parameters(**json.loads(params_json))
            with self._executor.batch():
                jobs = [self._executor.submit(NodeJob(), spec, n.to_json()) for n in nodes]
            for n, job in zip(nodes, jobs, strict=True):
                self._jobs[n.key] = job

    def _collect(self, key: str, job: Any) -> NodeOutcome:
        try:
            out = NodeOutcome.from_json(job.result())
        except Exception as exc:  # the job itself failed: killed, out of memory, out of requeues
            log = [f"job {job.job_id} ({self._executor.cluster}): {type(exc).__name__}"]
            log += _tail(job.paths.stderr)
            out = NodeOutcome(
                key, "failed", error=f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1:] or ''}",
                error_type=type(exc).__name__, retryable=True, crashed=True, messages=log,
            )  # fmt: skip
        if out.status == "failed":
            out.messages = [*out.messages, f"job logs: {job.paths.stdout} {job.paths.stderr}"]
        self.env.store.counters.add(out.counters)
        for m in out.messages if out.status != "failed" else []:
            self.env.log(m)
        return out

    def wait(self) -> list[NodeOutcome]:
        if self._buffer:
            self._flush()
        if not self._jobs:
            return []
        while True:
            done = [k for k, job in self._jobs.items() if job.done()]
            if done:
                return [self._collect(k, self._jobs.pop(k)) for k in done]
            time.sleep(self.poll)

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for job in self._jobs.values():
                with contextlib.suppress(Exception):  # best effort on the way out
                    job.cancel(check=False)
        self._jobs.clear()
        self._buffer.clear()


def make_submitit_executor(env: NodeEnv, workers: int, options: Mapping[str, Any]) -> SubmititExecutor:
    opts = dict(options)
    if opts.get("cluster") in ("local", "debug") and not opts.get("max_in_flight"):
        opts["max_in_flight"] = max(1, workers)
    if env.model_loader is not None or env.load_distribution is not None:
        raise ConfigError("--executor submitit needs models and data that job processes can load by name")
    if opts.get("cluster") == "local" and not env.spec.threads:
        import os

        threads = max(1, (os.cpu_count() or 1) // int(opts.get("max_in_flight") or 1))
        env = NodeEnv(env.store, RunSpec.from_json({**env.spec.to_json(), "threads": threads}), log=env.log)
    return SubmititExecutor(env, opts)
