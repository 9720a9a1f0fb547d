"""``genies run`` as a library call: validate everything, plan the graph, run it, write the outputs.

``prepare_run`` does every check that can fail on bad input — names, configs, executor, output
location, the store, the suite, the model's identity, the data — and plans the job graph, all without
loading model weights (over-length drops need only the tokenizer, and their lengths are cached in the
store). ``execute`` then finds what the store already holds (verified), runs the rest through the
executor (loading the model only if something must be computed, and before anything is written),
and writes ``<out>/<suite>.csv`` and ``<out>/<suite>.json``.

``--limit N`` means: the first N pairs of every evaluation, and at most the first N examples of every
training split; over-length examples are then dropped (see ``genies.pipeline.plan``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genies.errors import ConfigError, InterruptedRun, StoreError
from genies.io import atomic_write_json
from genies.pipeline.config import (
    RoleConfigs,
    TTCSpec,
    load_toml,
    merge,
    parse_sets,
    parse_ttc,
    resolve_configs,
)
from genies.pipeline.executors import NodeOutcome, check_executor, make_executor, run_graph
from genies.pipeline.graph import Graph, Node
from genies.pipeline.kinds import NodeEnv, RunSpec, count_reused, lookup, resolve
from genies.pipeline.nodes import ACTIVATION_DTYPES, data_ref, lengths_node
from genies.pipeline.plan import OverLength, Plan, build_plan, needed_distributions
from genies.pipeline.store import ResultStore, StoreCounters
from genies.records import EvaluationRecord, SuiteResult
from genies.rows import Cell, CIPolicy, build_row, pick_best, write_csv

if TYPE_CHECKING:
    from rich.console import Console

    from genies.api.intervention import Intervention, LengthRule
    from genies.data.schema import Distribution
    from genies.lengths import TokenizerSource
    from genies.models.loading import LoadedModel


@dataclass
class RunOptions:
    """Everything ``genies run`` takes (CLI flags map one to one)."""

    intervention: str
    suite: str = "genies"
    model: str = "smollm2-135m"
    limit: int | None = None
    seed: int = 0
    out: str | os.PathLike[str] | None = None
    store: str | os.PathLike[str] | None = None
    data_dir: str | os.PathLike[str] | None = None
    baseline_intervention: str = "zero_shot"
    ttc: str = "single"
    ttc_intervention: str | None = None
    config_file: str | os.PathLike[str] | None = None
    sets: Sequence[str] = ()
    force: bool = False
    device: str = "auto"
    dtype: str | None = None
    progress: bool = True
    executor: str = "local"
    workers: int = 1
    activation_dtype: str = "float32"


@dataclass
class PreparedRun:
    """A validated, planned run, ready to execute."""

    options: RunOptions
    main: Intervention
    baseline: Intervention
    ttc: TTCSpec
    configs: RoleConfigs
    out: Path
    store: ResultStore
    suite_name: str
    plan: Plan
    model_key: dict[str, Any]  # model name + weights hash + compute settings, as hashed into keys
    model_info: dict[str, Any]  # the same plus where the model lives (for the outputs)
    env: NodeEnv = field(repr=False)
    created: list[Path] = field(default_factory=list)  # output folders this run created


@dataclass
class RunOutcome:
    result: SuiteResult
    csv_path: Path
    json_path: Path
    counters: StoreCounters
    model_loaded: bool
    prepared: PreparedRun = field(repr=False)


# ---------------------------------------------------------------- outputs


def model_slug(name: str) -> str:
    """A folder-safe name for a model alias, hub id or local path (its last component)."""
    last = Path(name.rstrip("/\\")).name or name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-") or "model"


def suite_slug(suite: str) -> str:
    """The output file stem of a suite: its name, or a suite file's stem."""
    p = Path(suite)
    stem = p.stem if p.suffix.lower() == ".json" else p.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "suite"


def default_out_dir(model: str, intervention: str) -> Path:
    return Path("genies-results") / model_slug(model) / intervention


def check_out_location(out: Path, protected: Mapping[str, Path]) -> None:
    """Refuse an output folder inside the data store, the result store or the models folder."""
    o = out.expanduser().resolve()
    for what, root in protected.items():
        r = Path(root).expanduser().resolve()
        if o == r or r in o.parents:
            raise ConfigError(f"--out {out} is inside {what} {r}; choose a folder outside it")


def prepare_out(out: Path) -> list[Path]:
    """Create ``out`` and prove a file can be written there; return the folders created (so a run
    that fails later can remove them again)."""
    missing = [p for p in [out, *out.parents] if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".genies-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        remove_empty(missing)
        raise StoreError(f"output directory {out} is not writable: {exc.strerror or exc}") from None
    return missing


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove folders this run created, innermost first, where they are still empty."""
    for d in folders:
        with contextlib.suppress(OSError):
            d.rmdir()


def write_outputs(result: SuiteResult, out: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out>/<name>.csv`` (upstream columns) and ``<out>/<name>.json`` atomically."""
    csv_path, json_path = out / f"{name}.csv", out / f"{name}.json"
    try:
        write_csv(result.rows, csv_path)
        atomic_write_json(json_path, result.model_dump(mode="json"))
    except OSError as exc:
        raise StoreError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return csv_path, json_path


# ---------------------------------------------------------------- rows


def _metric(rec: EvaluationRecord, key: str) -> float:
    return float(rec.metrics.get(key, math.nan))


def build_suite_result(
    plan: Plan,
    records: Mapping[str, EvaluationRecord],
    *,
    suite: str,
    intervention: str,
    intervention_config: dict[str, Any],
    baseline_intervention: str,
    ttc: TTCSpec,
    model: dict[str, Any],
    seed: int,
    limit: int | None,
    versions: dict[str, str],
    ci_resamples: int = 2000,
) -> SuiteResult:
    """One ShiftResult per planned row (``genies.rows.build_row``), CIs seeded from the run's seed."""
    from genies import metrics

    ci, cache = CIPolicy("half", ci_resamples, seed), {}
    rows = []
    up = "accuracy_upstream"
    for rp in plan.rows:
        gen, base, src = records[rp.generalization], records[rp.baseline], records[rp.source_id]
        cands = {name: records[k] for name, k in rp.ttc.items()}
        winner = pick_best({n: _metric(r, "accuracy") for n, r in cands.items()})
        tt, tt_up = cands[winner], cands[pick_best({n: _metric(r, up) for n, r in cands.items()})]
        extra: dict[str, float] = {
            "generalization_accuracy_upstream": _metric(gen, up),
            "baseline_accuracy_upstream": _metric(base, up),
            "target_tuned_capability_upstream": _metric(tt_up, up),
            "source_ID_accuracy_upstream": _metric(src, up),
            "differential_elicitation_upstream": metrics.differential_elicitation(
                _metric(gen, up), _metric(base, up), _metric(tt_up, up)
            ),
            "rms_calibration_error_upstream": _metric(gen, "rms_calibration_error_upstream"),
            "brier_score": _metric(gen, "brier_score"),
            "average_probability": _metric(gen, "average_probability"),
            "ece": _metric(gen, "ece"),
            "tie_rate": _metric(gen, "tie_rate"),
            "n_generalization": float(gen.n),
            "n_baseline": float(base.n),
            "n_target_tuned": float(tt.n),
            "n_source": float(src.n),
            "dropped_generalization": float(gen.dropped),
        }
        keys = {
            "generalization": rp.generalization,
            "baseline": rp.baseline,
            "ttc": rp.ttc[winner],
            "source_id": rp.source_id,
        }
        if ttc.mode == "best-of":
            extra.update({f"target_tuned_accuracy.{n}": _metric(r, "accuracy") for n, r in cands.items()})
            keys.update({f"ttc.{name}": k for name, k in rp.ttc.items()})
        rows.append(
            build_row(
                rp.shift,
                rp.target_reference,
                generalization=Cell.of(gen),
                baseline=Cell.of(base),
                target_tuned=Cell.of(tt),
                source=Cell.of(src),
                baseline_intervention=baseline_intervention,
                ttc_intervention=winner,
                rms_calibration_error=_metric(gen, "rms_calibration_error"),
                extra=extra,
                keys=keys,
                ci=ci,
                ci_cache=cache,
            )
        )
    return SuiteResult(
        suite=suite,
        intervention=intervention,
        intervention_config=intervention_config,
        baseline_intervention=baseline_intervention,
        ttc=ttc.label,
        ttc_interventions=list(ttc.interventions),
        model=model,
        seed=seed,
        limit=limit,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=versions,
        rows=rows,
    )


# ---------------------------------------------------------------- planning


def over_length_oracle(
    env: NodeEnv, source: Callable[[], TokenizerSource], dists: Mapping[str, Distribution]
) -> OverLength:
    """Over-length examples from ``lengths`` nodes, resolved now through the store (tokenizer only)."""
    memo: dict[tuple[str, str, LengthRule], tuple[Node, list[int]]] = {}

    def over_length(dist_id: str, split: str, rules: tuple[LengthRule, ...]) -> tuple[set[int], list[Node]]:
        src = source()
        out: set[int] = set()
        nodes = []
        for rule in rules:
            if (dist_id, split, rule) not in memo:
                node = lengths_node(src.sha256, src.name, data_ref(dists[dist_id], split), rule)
                env.tokenizers.setdefault(src.name, src)
                resolve(node, env)
                record = env.store.load_lengths(node.key)
                if record is None:
                    raise StoreError(
                        f"the lengths of {dist_id} ({split}) cannot be read back from {env.store.root}"
                    )
                memo[(dist_id, split, rule)] = (node, record.longest)
            node, longest = memo[(dist_id, split, rule)]
            nodes.append(node)
            out |= {i for i, n in enumerate(longest) if n > src.max_length}
        return out, nodes

    return over_length


def prepare_run(
    options: RunOptions,
    *,
    warn: Callable[[str], None] | None = None,
    model_loader: Callable[[], LoadedModel] | None = None,
    model_key: dict[str, Any] | None = None,
    load_distribution: Callable[[str], Distribution] | None = None,
    tokenizer: TokenizerSource | None = None,
) -> PreparedRun:
    """Validate ``options`` and plan the run; raises a one-line GeniesError on any bad input.

    ``model_loader``/``model_key``/``load_distribution``/``tokenizer`` replace the real model, data
    and tokenizer access (tests and embedding applications); by default they come from genies.models,
    genies.data and the model's folder.
    """
    from genies.interventions.registry import get_intervention
    from genies.paths import data_dir, models_dir, store_dir
    from genies.shifts import get_suite

    if options.limit is not None and options.limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {options.limit})")
    if options.seed < 0:
        raise ConfigError(f"--seed must be non-negative (got {options.seed})")
    check_executor(options.executor, options.workers)
    if options.activation_dtype not in ACTIVATION_DTYPES:
        raise ConfigError(
            f"--activation-dtype must be one of {', '.join(ACTIVATION_DTYPES)} (got {options.activation_dtype!r})"
        )

    main = get_intervention(options.intervention)
    baseline = get_intervention(options.baseline_intervention)
    ttc = parse_ttc(options.ttc, options.ttc_intervention, main.name)
    ttc_ivs = {name: get_intervention(name) for name in ttc.interventions}
    raw: dict[str, Any] = load_toml(options.config_file) if options.config_file else {}
    raw = merge(raw, parse_sets(list(options.sets)))
    configs = resolve_configs(raw, main=main, baseline=baseline, ttc=ttc, ttc_interventions=ttc_ivs)

    # With the real data store, unknown distribution ids are reported here, before anything is created.
    shifts = get_suite(options.suite, options.data_dir, check_data=load_distribution is None)
    if not shifts:
        raise ConfigError(f"suite {options.suite!r} has no shifts")

    out = Path(options.out) if options.out is not None else default_out_dir(options.model, main.name)
    store = ResultStore(store_dir(options.store), warn=warn)
    check_out_location(
        out,
        {
            "the data store": data_dir(options.data_dir),
            "the result store": store.root,
            "the models folder": models_dir(),
        },
    )
    if model_key is None:
        from genies.models.loading import compute_settings, model_identity

        model_info = {**model_identity(options.model), **compute_settings(options.device, options.dtype)}
        # The folder a model was converted into or found in is not part of the key: the same weights
        # give the same numbers wherever they live (a store can move to another machine).
        model_key = {k: v for k, v in model_info.items() if k != "path"}
    else:
        model_info = dict(model_key)

    if options.workers > 1 and (model_loader is not None or load_distribution is not None):
        raise ConfigError("--workers > 1 needs models and data that worker processes can load by name")
    user_loader = load_distribution
    if load_distribution is None:
        from genies.data import load_distribution as _load

        def load_distribution(dist_id: str) -> Distribution:
            return _load(dist_id, options.data_dir)

    dists = {d: load_distribution(d) for d in needed_distributions(shifts)}
    created = prepare_out(out)
    try:
        store.check_writable()
        spec = RunSpec(
            str(store.root),
            None if options.data_dir is None else str(options.data_dir),
            device=options.device,
        )
        env = NodeEnv(store, spec, model_loader=model_loader, load_distribution=user_loader)

        def tokenizer_source() -> TokenizerSource:
            nonlocal tokenizer
            if tokenizer is None:
                from genies.lengths import TokenizerSource

                if "path" not in model_info:
                    raise ConfigError("over-length drops need the model's tokenizer: pass tokenizer=")
                tokenizer = TokenizerSource(options.model, model_info["path"])
            return tokenizer

        plan = build_plan(
            shifts,
            dists,
            main=main,
            baseline=baseline,
            ttc=ttc,
            ttc_interventions=ttc_ivs,
            configs=configs,
            model_identity=model_key,
            seed=options.seed,
            limit=options.limit,
            over_length=over_length_oracle(env, tokenizer_source, dists),
            activation_dtype=options.activation_dtype,
        )
    except BaseException:
        remove_empty(created)
        raise
    return PreparedRun(
        options,
        main,
        baseline,
        ttc,
        configs,
        out,
        store,
        suite_slug(options.suite),
        plan,
        model_key,
        model_info,
        env,
        created,
    )


# ---------------------------------------------------------------- execution


def find_todo(graph: Graph, env: NodeEnv, sinks: Sequence[str]) -> list[str]:
    """The nodes that must run for every sink to have a result, in graph order.

    Sinks first, then backwards: a node whose verified result is in the store is done (and its own
    dependencies are not even looked at, unless another node to compute needs them); one that is
    not must run, and so must be able to read its dependencies.
    """
    wanted, todo = set(sinks), set()
    for node in reversed(list(graph)):
        if node.key not in wanted:
            continue
        if lookup(node, env, report=True) is not None:
            count_reused(node, env)
        else:
            todo.add(node.key)
            wanted.update(node.deps)
    return [k for k in graph.nodes if k in todo]


def _model_inputs(node: Node) -> dict[str, Any]:
    return node.inputs["state"]["model"] if node.kind == "evaluation" else node.inputs["model"]


@contextlib.contextmanager
def progress_bar(console: Console | None, total: int, enabled: bool) -> Iterator[Any]:
    if not enabled or console is None:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pairs"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        progress.main_task = progress.add_task("starting", total=max(total, 1))  # type: ignore[attr-defined]
        yield progress


def ctx_progress(progress: Any) -> Callable[[int, str], Any]:
    """``ctx.progress`` inside the local executor: a transient sub-task of the run's progress bar."""

    @contextlib.contextmanager
    def factory(total: int, description: str) -> Iterator[Callable[[int], None]]:
        tid = progress.add_task(f"  {description}", total=max(total, 1))
        try:
            yield lambda n=1: progress.advance(tid, n)
        finally:
            progress.remove_task(tid)

    return factory


def execute(prepared: PreparedRun, *, console: Console | None = None) -> RunOutcome:
    """Run a prepared plan and write its outputs."""
    from genies._meta import software_versions

    o, store, plan = prepared.options, prepared.store, prepared.plan
    env = prepared.env
    log = (
        (lambda msg: console.print(msg, highlight=False, markup=False))
        if console is not None
        else (lambda msg: None)
    )
    spec = env.spec
    if o.force:
        g = store.new_generation()
        spec = RunSpec.from_json({**spec.to_json(), "min_generation": g, "forced": g})
    plugin_modules = sorted({n.settings["module"] for n in plan.graph if n.settings.get("module")})
    spec = RunSpec.from_json({**spec.to_json(), "plugin_modules": plugin_modules})
    env = NodeEnv(
        store,
        spec,
        log=log,
        model_loader=env.model_loader,
        load_distribution=env.load_distribution,
        tokenizers=env.tokenizers,
    )
    sinks = [n.key for n in plan.evaluations]
    todo = find_todo(plan.graph, env, sinks)
    n_eval_todo = sum(plan.graph[k].kind == "evaluation" for k in todo)
    log(
        f"{len(sinks)} evaluations: {len(sinks) - n_eval_todo} already in the store, {n_eval_todo} to compute"
        f" (store: {store.root})"
    )
    # Load the model before anything is computed when something needs it: a model that cannot be
    # loaded then fails the run before it has written a single entry.
    model_nodes = [plan.graph[k] for k in todo if plan.graph[k].resources.get("model")]
    preload = _model_inputs(model_nodes[0]) if model_nodes else None
    total = sum(int(plan.graph[k].resources.get("units", 0)) for k in todo)
    done = 0
    try:
        with progress_bar(console, total, o.progress) as bar:
            if bar is not None:
                env.progress = ctx_progress(bar)
            executor = make_executor(o.executor, o.workers, env)

            def on_outcome(node: Node, out: NodeOutcome) -> None:
                nonlocal done
                if o.workers > 1:  # worker processes: their counters and messages come back here
                    store.counters.add(out.counters)
                    for m in out.messages:
                        log(m)
                if out.status in ("computed", "reused") and node.kind == "evaluation":
                    done += 1
                if bar is not None:
                    ok = out.status in ("computed", "reused")
                    units = int(node.resources.get("units", 0)) if ok else 0
                    bar.update(
                        bar.main_task, advance=units, description=f"[{done}/{n_eval_todo}] {node.label}"
                    )

            run_graph(plan.graph, todo, executor, on_outcome=on_outcome, preload=preload)
    except KeyboardInterrupt:
        raise InterruptedRun(
            f"interrupted after {done} of {n_eval_todo} evaluations to compute; finished work is saved "
            f"in {store.root} — rerun the same command to resume"
        ) from None
    records: dict[str, EvaluationRecord] = {}
    for key in sinks:
        rec = store.load_evaluation(key)
        if rec is None:
            raise StoreError(
                f"evaluation {key} is missing from {store.root} after the run; rerun the command"
            )
        records[key] = rec
    result = build_suite_result(
        plan,
        records,
        suite=o.suite,
        intervention=prepared.main.name,
        intervention_config=prepared.main.key_config(prepared.configs.intervention),
        baseline_intervention=prepared.baseline.name,
        ttc=prepared.ttc,
        model=prepared.model_info,
        seed=o.seed,
        limit=o.limit,
        versions=software_versions(),
    )
    csv_path, json_path = write_outputs(result, prepared.out, prepared.suite_name)
    loaded = any(s.loaded for s in env.sessions.values())
    prepared.env = env
    return RunOutcome(
        result, csv_path, json_path, store.counters, loaded or store.counters.model_loads > 0, prepared
    )


def run_suite(options: RunOptions, *, console: Console | None = None, **overrides: Any) -> RunOutcome:
    """``prepare_run`` + ``execute``; ``overrides`` go to ``prepare_run``. A run that fails removes the
    output folders it created while they are still empty."""
    warn = overrides.pop("warn", None)
    if warn is None and console is not None:

        def warn(msg: str) -> None:
            console.print(f"warning: {msg}", highlight=False, markup=False)

    prepared = prepare_run(options, warn=warn, **overrides)
    try:
        return execute(prepared, console=console)
    except BaseException:
        remove_empty(prepared.created)
        raise
