"""``genies sweep-run``: one job graph over models × interventions × suites, deduplicated and resumable.

A sweep is a TOML file (see docs/scale-out.md and examples/sweeps/)::

    [sweep]
    models = ["smollm2-135m"]            # or [[models]] tables with per-model configs
    interventions = ["zero_shot", "few_shot"]
    suites = ["genies"]
    limit = 10
    out = "sweep-results"                # <out>/<model>/<intervention>/<suite>.{csv,json}

    [config.few_shot.intervention]       # per-intervention role tables, exactly as `genies run --config`
    num_shots = 2

    [[models]]
    name = "llama-7b"
    [models.config.lora.intervention]    # per-model overrides, merged over [config.lora]
    learning_rate = 2e-4

    [resources.state]                    # per node kind: gpus, cpus, mem_gb, minutes (time limit),
    gpus = 1                             # est_seconds + est_seconds_per_unit (for --dry-run's GPU-hours)

Planning reuses ``genies run`` unchanged: each (model, intervention, suite) is one ``prepare_run``
(same validation, same per-role configs, same plan); their graphs are merged by node key, so a node
two runs share (the zero-shot baseline of a target, an activation set, a lengths record) is one node
computed once. Nodes whose verified result is in the store are skipped (``find_todo``). The merged
graph runs through any ``Executor`` with ``keep_going=True``: a failure is recorded (with its log)
under ``<out>/.sweep/failures/`` and only its dependents wait; ``--retry-failed`` reruns those.
Each run's outputs are written with ``genies run``'s own row builder and writers.

``--force`` recomputes every node as ``genies run --force`` does: the store's run generation is
incremented and results of older generations are not used (``RunSpec.min_generation``). The forced
generation is recorded in ``<out>/.sweep/forced.json`` until the forced sweep has finished every
node, so a forced sweep that was killed is resumed, not restarted, by running the sweep again
(with or without ``--force``: a second ``--force`` starts a new generation and recomputes everything).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genies.errors import ConfigError
from genies.io import atomic_write_json
from genies.pipeline.config import load_toml, merge
from genies.pipeline.executors import (
    Executor,
    LocalExecutor,
    NodeOutcome,
    make_executor,
    run_graph,
    run_node,
)
from genies.pipeline.graph import NODE_KINDS, Graph, Node
from genies.pipeline.kinds import NodeEnv, RunSpec
from genies.pipeline.store import ResultStore, StoreCounters
from genies.pipeline.suite import (
    PreparedRun,
    RunOptions,
    build_suite_result,
    find_todo,
    model_slug,
    prepare_run,
    remove_empty,
    write_outputs,
)

STATE_DIR = ".sweep"

#: Resource needs per node kind (overridable under ``[resources.KIND]``; ``[resources.default]`` for all).
#: ``minutes`` is the time limit a scheduler gets; the ``est_*`` figures only feed --dry-run's estimate
#: (rough 7B-on-one-GPU numbers: set them from a measured run of your own).
DEFAULT_RESOURCES: dict[str, dict[str, float]] = {
    "lengths": {"gpus": 0, "cpus": 1, "mem_gb": 4, "minutes": 20, "est_seconds": 5, "est_seconds_per_unit": 0},
    "state": {"gpus": 1, "cpus": 4, "mem_gb": 48, "minutes": 240, "est_seconds": 120, "est_seconds_per_unit": 0.5},
    "evaluation": {"gpus": 1, "cpus": 4, "mem_gb": 32, "minutes": 60, "est_seconds": 60, "est_seconds_per_unit": 0.05},
    "activations": {"gpus": 1, "cpus": 4, "mem_gb": 32, "minutes": 60, "est_seconds": 60, "est_seconds_per_unit": 0.05},
}  # fmt: skip
RESOURCE_KEYS = ("gpus", "cpus", "mem_gb", "minutes", "est_seconds", "est_seconds_per_unit")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    gpus: int | None = Field(None, ge=0)
    cpus: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    minutes: float | None = Field(None, gt=0)
    est_seconds: float | None = Field(None, ge=0)
    est_seconds_per_unit: float | None = Field(None, ge=0)


class ModelEntry(_Strict):
    name: str
    interventions: list[str] | None = None  # [default: the sweep's]
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)  # intervention -> role tables
    resources: dict[str, Resources] = Field(default_factory=dict)  # per node kind, over the sweep's


class SubmititOptions(_Strict):
    cluster: str | None = None  # slurm | local | debug | None (auto: slurm if sbatch is on PATH)
    folder: str | None = None  # job logs and pickles [default: <out>/.sweep/submitit]
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = Field(None, ge=0)  # [default: the node kind's gpus]
    timeout_min: int | None = Field(None, ge=1)  # [default: the node kind's minutes]
    array_parallelism: int = Field(32, ge=1)
    max_in_flight: int | None = Field(None, ge=1)  # jobs queued at once [default: array_parallelism]
    poll_seconds: float = Field(2.0, gt=0)
    max_requeues: int = Field(3, ge=0)  # preemption / timeout requeues per job
    setup: list[str] = Field(default_factory=list)  # shell lines run before each job (module load …)
    additional: dict[str, Any] = Field(default_factory=dict)  # extra slurm_additional_parameters


class RayOptions(_Strict):
    address: str | None = None  # an existing cluster ("auto", "ray://host:10001"); None: start a local one
    num_cpus: int | None = Field(None, ge=1)  # for a local cluster
    max_in_flight: int = Field(64, ge=1)


class ExecutorOptions(_Strict):
    name: str = "local"
    workers: int = Field(1, ge=1)
    submitit: SubmititOptions = Field(default_factory=SubmititOptions)
    ray: RayOptions = Field(default_factory=RayOptions)


class SweepSection(_Strict):
    models: list[str | ModelEntry] = Field(default_factory=list)
    interventions: list[str]
    suites: list[str] = Field(default_factory=lambda: ["genies"])
    limit: int | None = None
    seed: int = 0
    baseline_intervention: str = "zero_shot"
    ttc: str = "single"
    ttc_intervention: str | None = None
    out: str = "sweep-results"
    store: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    dtype: str | None = None


class SweepConfig(_Strict):
    sweep: SweepSection
    models: list[ModelEntry] = Field(default_factory=list)
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    resources: dict[str, Resources] = Field(default_factory=dict)
    executor: ExecutorOptions = Field(default_factory=ExecutorOptions)
    base_dir: str = "."  # where relative paths are resolved from (the config file's folder)

    def model_entries(self) -> list[ModelEntry]:
        out = [m if isinstance(m, ModelEntry) else ModelEntry(name=m) for m in self.sweep.models]
        out += self.models
        if not out:
            raise ConfigError("the sweep names no models: set sweep.models or add [[models]] tables")
        names = [m.name for m in out]
        if len(set(names)) != len(names):
            raise ConfigError("the sweep names a model twice")
        return out

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p


def load_sweep_config(
    path: str | os.PathLike[str], overrides: Mapping[str, Any] | None = None
) -> SweepConfig:
    """Read and validate a sweep TOML (one-line ConfigError on any problem)."""
    raw = merge(load_toml(path), dict(overrides or {}))
    tables = [
        raw.get("resources", {}),
        *(m.get("resources", {}) for m in raw.get("models", []) if isinstance(m, dict)),
    ]
    unknown = sorted({k for t in tables if isinstance(t, dict) for k in t} - {*NODE_KINDS, "default"})
    if unknown:
        raise ConfigError(f"sweep config {path}: unknown node kind [resources.{unknown[0]}]")
    try:
        return SweepConfig(**raw, base_dir=str(Path(path).resolve().parent))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"sweep config {path}: {where}: {err['msg']}") from None


def node_resources(cfg: SweepConfig, kind: str, model: ModelEntry | None = None) -> dict[str, float]:
    """Defaults, then ``[resources.default]``, ``[resources.KIND]``, then the model's own tables."""
    out = dict(DEFAULT_RESOURCES[kind])
    for tables in (cfg.resources, model.resources if model is not None else {}):
        for section in ("default", kind):
            res = tables.get(section)
            if res is not None:
                out.update({k: v for k, v in res.model_dump().items() if v is not None})
    return out


def _toml_literal(value: Any) -> str:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    return json.dumps(value, ensure_ascii=False)


def _flatten_sets(tables: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Role tables → ``genies run --set`` items (``intervention.num_shots=2``): the sweep configures
    each run through the same parser and validation as ``genies run``."""
    out: list[str] = []
    for k, v in tables.items():
        if isinstance(v, Mapping):
            out += _flatten_sets(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={_toml_literal(v)}")
    return out


# ---------------------------------------------------------------- planning


@dataclass
class SweepRun:
    model: str
    intervention: str
    suite: str
    prepared: PreparedRun


@dataclass
class PreparedSweep:
    config: SweepConfig
    runs: list[SweepRun]
    graph: Graph
    store: ResultStore
    env: NodeEnv
    out: Path
    created: list[Path] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.out / STATE_DIR

    @property
    def sinks(self) -> list[str]:
        return list(dict.fromkeys(n.key for r in self.runs for n in r.prepared.plan.evaluations))


def prepare_sweep(cfg: SweepConfig, *, warn: Callable[[str], None] | None = None) -> PreparedSweep:
    """Plan every run with ``genies run``'s ``prepare_run`` and merge the graphs by node key."""
    s = cfg.sweep
    if not s.interventions:
        raise ConfigError("the sweep names no interventions")
    if not s.suites:
        raise ConfigError("the sweep names no suites")
    out = cfg.path(s.out)
    assert out is not None
    runs: list[SweepRun] = []
    created: list[Path] = []
    graph = Graph()
    try:
        for model in cfg.model_entries():
            for iv in model.interventions if model.interventions is not None else s.interventions:
                tables = merge(cfg.config.get(iv, {}), model.config.get(iv, {}))
                for suite in s.suites:
                    suite_arg = suite if not suite.lower().endswith(".json") else str(cfg.path(suite))
                    opts = RunOptions(
                        intervention=iv,
                        suite=suite_arg,
                        model=model.name,
                        limit=s.limit,
                        seed=s.seed,
                        out=out / model_slug(model.name) / iv,
                        store=cfg.path(s.store),
                        data_dir=cfg.path(s.data_dir),
                        baseline_intervention=s.baseline_intervention,
                        ttc=s.ttc,
                        ttc_intervention=s.ttc_intervention,
                        sets=_flatten_sets(tables),
                        device=s.device,
                        dtype=s.dtype,
                        progress=False,
                    )
                    prepared = prepare_run(opts, warn=warn)
                    created += prepared.created
                    runs.append(SweepRun(model.name, iv, suite, prepared))
                    for node in prepared.plan.graph:
                        res = {**node.resources, **node_resources(cfg, node.kind, model)}
                        if not node.resources.get("model"):
                            res["gpus"] = 0
                        graph.add(dataclasses.replace(node, resources=res))
    except BaseException:
        remove_empty(sorted(set(created), key=lambda p: -len(p.parts)))
        raise
    first = runs[0].prepared
    plugin_modules = sorted({n.settings["module"] for n in graph if n.settings.get("module")})
    spec = RunSpec.from_json({**first.env.spec.to_json(), "plugin_modules": plugin_modules})
    env = NodeEnv(first.store, spec, log=lambda m: None, tokenizers=first.env.tokenizers)
    return PreparedSweep(cfg, runs, graph, first.store, env, out, created)


# ---------------------------------------------------------------- failure records and running markers


FORCED_FILE = "forced.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SweepState:
    """Failure records, running markers and an unfinished forced run of one sweep, under ``<out>/.sweep/``."""

    def __init__(self, root: Path) -> None:
        self.failures = root / "failures"
        self.running = root / "running"
        self.forced_file = root / FORCED_FILE

    def forced_generation(self, store: ResultStore) -> int | None:
        """The generation of this sweep's unfinished forced run in ``store`` (None: there is none)."""
        try:
            doc = json.loads(self.forced_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        g = doc.get("generation") if isinstance(doc, dict) else None
        if not isinstance(g, int) or doc.get("store") != str(store.root) or g > store.generation():
            return None  # another store, or a store that was reset since
        return g

    def start_forced(self, store: ResultStore, generation: int) -> None:
        atomic_write_json(
            self.forced_file,
            {"generation": generation, "store": str(store.root),
             "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        )  # fmt: skip

    def end_forced(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.forced_file.unlink()

    def failed(self) -> dict[str, dict[str, Any]]:
        out = {}
        for f in sorted(self.failures.glob("*.json")) if self.failures.exists() else []:
            with contextlib.suppress(OSError, ValueError):
                out[f.stem] = json.loads(f.read_text(encoding="utf-8"))
        return out

    def record_failure(self, node: Node, out: NodeOutcome, executor: str) -> Path:
        path = self.failures / f"{node.key}.json"
        doc = {
            "key": node.key,
            "kind": node.kind,
            "label": node.label,
            "executor": executor,
            "error": out.error,
            "error_type": out.error_type,
            "crashed": out.crashed,
            "seconds": out.seconds,
            "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "log": out.messages,
        }
        atomic_write_json(path, doc)
        return path

    def clear_failure(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.failures / f"{key}.json").unlink()

    def mark_running(self, node: Node, executor: str) -> None:
        atomic_write_json(
            self.running / f"{node.key}.json",
            {"key": node.key, "kind": node.kind, "host": socket.gethostname(), "pid": os.getpid(),
             "executor": executor},
        )  # fmt: skip

    def unmark(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.running / f"{key}.json").unlink()

    def live_running(self) -> set[str]:
        """Keys a live sweep process is running now (markers of dead processes on this host are removed)."""
        out = set()
        host = socket.gethostname()
        for f in list(self.running.glob("*.json")) if self.running.exists() else []:
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if doc.get("host") == host and not _alive(int(doc.get("pid", 0))):
                with contextlib.suppress(OSError):
                    f.unlink()
                continue
            out.add(f.stem)
        return out


class TrackingExecutor:
    """Wraps an executor: running markers while a node is in flight, a failure record when it fails."""

    def __init__(self, inner: Executor, state: SweepState, graph: Graph) -> None:
        self.inner, self.state, self.graph = inner, state, graph
        self.name = inner.name
        self.capacity = inner.capacity

    def start(self, *, preload: Mapping[str, Any] | None = None) -> None:
        self.inner.start(preload=preload)

    def submit(self, node: Node) -> None:
        self.state.mark_running(node, self.name)
        self.inner.submit(node)

    def wait(self) -> list[NodeOutcome]:
        outs = self.inner.wait()
        for out in outs:
            self.state.unmark(out.key)
            if out.status in ("computed", "reused"):
                self.state.clear_failure(out.key)
            elif out.status == "failed":
                self.state.record_failure(self.graph[out.key], out, self.name)
        return outs

    def close(self, *, cancel: bool = False) -> None:
        self.inner.close(cancel=cancel)


# ---------------------------------------------------------------- status, dry run


def _descendants(graph: Graph, keys: Iterable[str]) -> set[str]:
    deps = graph.dependents()
    out, stack = set(), list(keys)
    while stack:
        k = stack.pop()
        for d in deps.get(k, []):
            if d not in out:
                out.add(d)
                stack.append(d)
    return out


@dataclass
class SweepStatus:
    per_kind: dict[str, Counter[str]]  # kind -> {done, running, failed, pending}
    todo: list[str]
    failed: dict[str, dict[str, Any]]
    gpu_hours: float
    forced: int | None = None  # the generation of a forced run (planned, or unfinished)


def sweep_env(
    sweep: PreparedSweep, *, force: bool = False, plan_only: bool = False
) -> tuple[NodeEnv, int | None]:
    """The env the sweep's nodes run with, and the forced generation it accepts results from.

    ``force``: a new generation (``plan_only``: the one it would get, nothing written), so every
    result already stored is older and every node is to compute. Otherwise the generation of this
    sweep's unfinished forced run, if there is one (its finished nodes are kept, the rest computed);
    else the sweep's own env (everything stored is used).
    """
    state = SweepState(sweep.state_dir)
    if force and plan_only:
        g: int | None = sweep.store.generation() + 1
    elif force:
        g = sweep.store.new_generation()
        state.start_forced(sweep.store, g)
    else:
        g = state.forced_generation(sweep.store)
    if g is None:
        return sweep.env, None
    spec = RunSpec.from_json({**sweep.env.spec.to_json(), "min_generation": g, "forced": g})
    return dataclasses.replace(sweep.env, spec=spec), g


def estimate_seconds(node: Node) -> float:
    r = node.resources
    return float(r.get("est_seconds", 0)) + float(r.get("est_seconds_per_unit", 0)) * float(r.get("units", 0))


def sweep_status(sweep: PreparedSweep, *, force: bool = False) -> SweepStatus:
    """Done / running / failed / pending per kind (``force``: as ``sweep-run --force`` would see it,
    every node to compute and earlier failures retried)."""
    env, forced = sweep_env(sweep, force=force, plan_only=True)
    todo = find_todo(sweep.graph, env, sweep.sinks)
    state = SweepState(sweep.state_dir)
    failed = {} if force else {k: v for k, v in state.failed().items() if k in set(todo)}
    running = state.live_running()
    per_kind: dict[str, Counter[str]] = {k: Counter() for k in NODE_KINDS}
    todo_set = set(todo)
    for node in sweep.graph:
        if node.key not in todo_set:
            status = "done"
        elif node.key in failed:
            status = "failed"
        elif node.key in running:
            status = "running"
        else:
            status = "pending"
        per_kind[node.kind][status] += 1
    gpu_h = sum(
        float(sweep.graph[k].resources.get("gpus", 0)) * estimate_seconds(sweep.graph[k]) for k in todo
    )
    return SweepStatus({k: v for k, v in per_kind.items() if v}, todo, failed, gpu_h / 3600, forced)


# ---------------------------------------------------------------- execution


@dataclass
class SweepOutcome:
    written: list[tuple[SweepRun, Path, Path]]
    incomplete: list[tuple[SweepRun, int]]  # runs with evaluations missing (failed or blocked)
    outcomes: dict[str, NodeOutcome]
    failed: dict[str, dict[str, Any]]
    todo: int
    skipped_failed: int
    counters: StoreCounters
    seconds: float


class SweepLocalExecutor(LocalExecutor):
    """The in-process executor for sweeps: any exception of a node is its failure (with the traceback
    and the lines it logged), not the end of the sweep."""

    def wait(self) -> list[NodeOutcome]:
        if not self._queue:
            return []
        lines: list[str] = []
        log = self.env.log

        def capture(msg: str) -> None:
            lines.append(msg)
            log(msg)

        self.env.log = capture
        try:
            out = run_node(self._queue.popleft(), self.env, checked=True, catch_all=True)
        finally:
            self.env.log = log
        if out.status == "failed":
            out.messages = [*lines, *out.messages]
        return [out]


def build_executor(sweep: PreparedSweep, name: str, env: NodeEnv) -> Executor:
    o = sweep.config.executor
    if name == "local" and o.workers == 1:
        return SweepLocalExecutor(env)
    options = {
        "submitit": {**o.submitit.model_dump(), "folder": str(sweep.config.path(o.submitit.folder) or sweep.state_dir / "submitit")},
        "ray": o.ray.model_dump(),
    }  # fmt: skip
    return make_executor(name, o.workers, env, options=options.get(name))


def execute_sweep(
    sweep: PreparedSweep,
    *,
    retry_failed: bool = False,
    force: bool = False,
    log: Callable[[str], None] = lambda m: None,
    on_outcome: Callable[[Node, NodeOutcome], None] = lambda n, o: None,
) -> SweepOutcome:
    """Run what the store lacks (failed nodes only with ``retry_failed``), then write every run's outputs.

    ``force``: recompute every node in a new run generation (earlier failures included); see
    ``sweep_env`` for how an interrupted forced sweep resumes."""
    import time

    from genies._meta import software_versions

    t0 = time.perf_counter()
    env, forced = sweep_env(sweep, force=force)
    env = dataclasses.replace(env, log=log)
    if forced is not None:
        log(f"forced run, generation {forced}: every node is recomputed" if force else
            f"continuing the unfinished forced run of generation {forced} (its finished nodes are kept)")  # fmt: skip
    state = SweepState(sweep.state_dir)
    todo = find_todo(sweep.graph, env, sweep.sinks)
    earlier = {k for k in state.failed() if k in set(todo)}
    skipped: set[str] = set()
    if earlier and not (retry_failed or force):
        skipped = earlier | _descendants(sweep.graph, earlier)
        log(f"{len(earlier)} nodes failed in an earlier run (not retried; use --retry-failed)")
    run_todo = [k for k in todo if k not in skipped]
    name = sweep.config.executor.name
    executor = build_executor(sweep, name, env)
    merges = isinstance(executor, LocalExecutor) or getattr(executor, "merges_counters", False)
    model_nodes = [sweep.graph[k] for k in run_todo if sweep.graph[k].resources.get("model")]
    preload = None
    if model_nodes and isinstance(executor, LocalExecutor):
        n0 = model_nodes[0]
        preload = n0.inputs["state"]["model"] if n0.kind == "evaluation" else n0.inputs["model"]

    def outcome(node: Node, out: NodeOutcome) -> None:
        if not merges:
            sweep.store.counters.add(out.counters)
            for m in out.messages:
                log(m)
        if out.status == "failed":
            log(f"failed: {node.label or node.key}: {out.error}")
        on_outcome(node, out)

    tracked = TrackingExecutor(executor, state, sweep.graph)
    outcomes = run_graph(sweep.graph, run_todo, tracked, on_outcome=outcome, keep_going=True, preload=preload)
    written, incomplete = [], []
    for run in sweep.runs:
        p = run.prepared
        records = {}
        for n in p.plan.evaluations:
            rec = sweep.store.load_evaluation(n.key, report=False)
            if rec is not None:
                records[n.key] = rec
        missing = len({n.key for n in p.plan.evaluations} - set(records))
        if missing:
            incomplete.append((run, missing))
            continue
        result = build_suite_result(
            p.plan,
            records,
            suite=p.options.suite,
            intervention=p.main.name,
            intervention_config=p.main.key_config(p.configs.intervention),
            baseline_intervention=p.baseline.name,
            ttc=p.ttc,
            model=p.model_info,
            seed=p.options.seed,
            limit=p.options.limit,
            versions=software_versions(),
        )
        csv_path, json_path = write_outputs(result, p.out, p.suite_name)
        written.append((run, csv_path, json_path))
    remove_empty(sorted(set(sweep.created), key=lambda p: -len(p.parts)))
    failed = {k: v for k, v in state.failed().items() if k in set(todo)}
    if forced is not None and not failed and not incomplete:
        state.end_forced()  # every node has a result of the forced generation
    return SweepOutcome(
        written,
        incomplete,
        outcomes,
        failed,
        len(run_todo),
        len(skipped),
        sweep.store.counters,
        time.perf_counter() - t0,
    )


def status_table_rows(status: SweepStatus) -> list[tuple[str, int, int, int, int]]:
    cols = ("done", "running", "failed", "pending")
    return [(kind, *(int(c[s]) for s in cols)) for kind, c in status.per_kind.items()]  # type: ignore[misc]


def sweep_summary(sweep: PreparedSweep) -> dict[str, Any]:
    """Runs and node counts of a planned sweep (for --dry-run and the tests)."""
    per_run = sum(len(r.prepared.plan.graph) for r in sweep.runs)
    return {
        "runs": len(sweep.runs),
        "nodes": len(sweep.graph),
        "nodes_without_dedup": per_run,
        "per_kind": dict(Counter(n.kind for n in sweep.graph)),
    }


__all__: Sequence[str] = (
    "SweepConfig",
    "load_sweep_config",
    "prepare_sweep",
    "execute_sweep",
    "sweep_env",
    "sweep_status",
    "sweep_summary",
)
