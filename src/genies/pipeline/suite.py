"""``genies run`` as a library call: validate everything, plan, execute against the store, write outputs.

``prepare_run`` does every check that can fail on bad input — names, configs, output and store
writability, the suite, the model's identity, the data — before anything expensive happens.
``run_suite`` then executes the plan (loading the model only if something must be computed) and
writes ``<out>/<suite>.csv`` and ``<out>/<suite>.json``.

``--limit N`` means: the first N pairs of every evaluation, and at most the first N examples of every
training split. It is part of every cache key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genies.errors import ConfigError
from genies.pipeline.config import (
    RoleConfigs,
    TTCSpec,
    cache_config,
    load_toml,
    merge,
    parse_sets,
    parse_ttc,
    resolve_configs,
)
from genies.pipeline.outputs import (
    build_suite_result,
    check_out_writable,
    default_out_dir,
    suite_slug,
    write_outputs,
)
from genies.pipeline.plan import Plan, build_plan, needed_distributions
from genies.pipeline.runner import Runner
from genies.pipeline.store import ResultStore, StoreCounters

if TYPE_CHECKING:
    from rich.console import Console

    from genies.api.intervention import Intervention
    from genies.data.schema import Distribution
    from genies.models.loading import LoadedModel
    from genies.records import SuiteResult


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


@dataclass
class PreparedRun:
    """A validated run, ready to execute."""

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
    model_loader: Callable[[], LoadedModel]


@dataclass
class RunOutcome:
    result: SuiteResult
    csv_path: Path
    json_path: Path
    counters: StoreCounters
    model_loaded: bool
    prepared: PreparedRun = field(repr=False)


def prepare_run(
    options: RunOptions,
    *,
    warn: Callable[[str], None] | None = None,
    model_loader: Callable[[], LoadedModel] | None = None,
    model_key: dict[str, Any] | None = None,
    load_distribution: Callable[[str], Distribution] | None = None,
) -> PreparedRun:
    """Validate ``options`` and plan the run; raises a one-line GeniesError on any bad input.

    ``model_loader``/``model_key``/``load_distribution`` replace the real model and data access
    (tests and embedding applications); by default they come from genies.models and genies.data.
    """
    from genies.interventions.registry import get_intervention

    if options.limit is not None and options.limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {options.limit})")
    if options.seed < 0:
        raise ConfigError(f"--seed must be non-negative (got {options.seed})")

    main = get_intervention(options.intervention)
    baseline = get_intervention(options.baseline_intervention)
    ttc = parse_ttc(options.ttc, options.ttc_intervention, main.name)
    ttc_ivs = {name: get_intervention(name) for name in ttc.interventions}
    raw: dict[str, Any] = load_toml(options.config_file) if options.config_file else {}
    raw = merge(raw, parse_sets(list(options.sets)))
    configs = resolve_configs(raw, main=main, baseline=baseline, ttc=ttc, ttc_interventions=ttc_ivs)

    from genies.shifts import get_suite

    # With the real data store, unknown distribution ids are reported here, before anything is created.
    shifts = get_suite(options.suite, options.data_dir, check_data=load_distribution is None)
    if not shifts:
        raise ConfigError(f"suite {options.suite!r} has no shifts")

    if model_key is None:
        from genies.models.loading import compute_settings, model_identity

        model_info = {**model_identity(options.model), **compute_settings(options.device, options.dtype)}
        # The folder a model was converted into or found in is not part of the key: the same weights
        # give the same numbers wherever they live (a store can move to another machine).
        model_key = {k: v for k, v in model_info.items() if k != "path"}
    else:
        model_info = dict(model_key)

    out = Path(options.out) if options.out is not None else default_out_dir(options.model, main.name)
    check_out_writable(out)
    from genies.paths import store_dir

    store = ResultStore(store_dir(options.store), warn=warn)
    store.check_writable()
    if model_loader is None:

        def model_loader() -> LoadedModel:
            from genies.models.loading import load_model

            return load_model(options.model, device=options.device, dtype=options.dtype)

    if load_distribution is None:
        from genies.data import load_distribution as _load

        def load_distribution(dist_id: str) -> Distribution:
            return _load(dist_id, options.data_dir)

    dists = {d: load_distribution(d) for d in needed_distributions(shifts)}
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
    )
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
        model_loader,
    )


def execute(prepared: PreparedRun, *, console: Console | None = None) -> RunOutcome:
    """Run a prepared plan and write its outputs."""
    o = prepared.options
    runner = Runner(
        prepared.store,
        model_loader=prepared.model_loader,
        seed=o.seed,
        limit=o.limit,
        force=o.force,
        console=console,
        progress=o.progress,
    )
    records = runner.run(prepared.plan)
    result = build_suite_result(
        prepared.plan,
        records,
        suite=o.suite,
        intervention=prepared.main.name,
        intervention_config=cache_config(prepared.main, prepared.configs.intervention),
        baseline_intervention=prepared.baseline.name,
        ttc=prepared.ttc,
        model=prepared.model_info,
        seed=o.seed,
        limit=o.limit,
        versions=runner.versions(),
    )
    csv_path, json_path = write_outputs(result, prepared.out, prepared.suite_name)
    return RunOutcome(result, csv_path, json_path, prepared.store.counters, runner.model_loaded, prepared)


def run_suite(options: RunOptions, *, console: Console | None = None, **overrides: Any) -> RunOutcome:
    """``prepare_run`` + ``execute``; ``overrides`` go to ``prepare_run``."""
    warn = overrides.pop("warn", None)
    if warn is None and console is not None:

        def warn(msg: str) -> None:
            console.print(f"warning: {msg}", highlight=False, markup=False)

    return execute(prepare_run(options, warn=warn, **overrides), console=console)
