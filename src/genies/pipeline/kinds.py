"""Running one node: ``resolve(node, env)`` — the result of its key, or compute it under its lock.

Each node kind knows how to *look up* a verified result (``lookup``: through ``ResultStore``'s
checks, plus the generation rules) and how to *compute* and save one (``compute``). ``resolve`` is
the single path every executor takes for every node::

    verified result in the store?  → reused
    else, holding the key's lock: verified result now (another process finished it)?  → reused
    else compute, save, remove the node's checkpoint directory  → computed

A ``NodeEnv`` is what a process needs to run nodes: the store, the data directory, the run's
generation rules, and one ``ModelSession`` per model (so a process loads each model once, and only
when a node needs its weights). It can be rebuilt in any process from a ``RunSpec`` (plain JSON).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from genies.api.context import InterventionContext, ModelSession, open_activation_cache
from genies.errors import DataError, GeniesError, StoreError
from genies.hashing import content_hash
from genies.pipeline.graph import Node
from genies.pipeline.nodes import (
    NO_TRAIN,
    activation_dtype_of,
    activation_texts,
    select_pairs,
    select_train,
)
from genies.pipeline.store import ResultStore, StoredState, evaluation_record
from genies.records import EvaluationRecord, LengthsRecord

if TYPE_CHECKING:
    from genies.data.schema import Distribution
    from genies.lengths import TokenizerSource
    from genies.models.loading import LoadedModel


def _plugin_call(iv: Any, what: str, fn: Any, *args: Any) -> Any:
    """Call an intervention's ``fit`` / ``score_pairs``; a plug-in's own exception (not a GeniesError)
    becomes one GeniesError line naming the intervention, instead of a traceback (tune stream)."""
    try:
        return fn(*args)
    except GeniesError:
        raise
    except Exception as exc:  # noqa: BLE001 - third-party code: report it, never crash the run
        text = " ".join(str(exc).split())[:500] or type(exc).__name__
        raise GeniesError(f"intervention {iv.name!r} failed in {what}: {type(exc).__name__}: {text}") from exc


class DependencyInvalid(GeniesError):
    """A node found one of its dependencies missing or unusable; the dependency must be recomputed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class RunSpec:
    """What a process needs to run a run's nodes (JSON-able, so it travels to workers).

    ``min_generation``: results of older generations are not used (a forced run's generation).
    ``forced``: the generation results of a forced run are written with (None: not forced).
    ``threads``: torch CPU threads per process (None: torch's default).
    ``device``: where to place models (``cuda:1``); not part of any key — only its type is, and a
    device of another type than a node's ``device_type`` is ignored for that node.
    """

    store: str
    data_dir: str | None = None
    min_generation: int = 0
    forced: int | None = None
    threads: int | None = None
    plugin_modules: tuple[str, ...] = ()
    device: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunSpec:
        return cls(**{**doc, "plugin_modules": tuple(doc.get("plugin_modules", ()))})

    def write_generation(self, deps: Iterable[int]) -> int:
        """The generation a result is written with: the forced run's, else its newest dependency's."""
        return self.forced if self.forced is not None else max(deps, default=0)


@dataclass
class NodeEnv:
    """Everything one process needs to run nodes (see the module docstring)."""

    store: ResultStore
    spec: RunSpec
    log: Callable[[str], None] = field(default=lambda msg: None)
    progress: Any = None  # a ProgressFactory for ctx.progress, or None
    model_loader: Callable[[], LoadedModel] | None = None  # in-process override (tests, embedding apps)
    load_distribution: Callable[[str], Distribution] | None = None
    tokenizers: dict[str, TokenizerSource] = field(default_factory=dict)
    sessions: dict[str, ModelSession] = field(default_factory=dict)

    @property
    def counters(self):
        return self.store.counters

    def count(self, name: str, n: int = 1) -> None:
        setattr(self.counters, name, getattr(self.counters, name) + n)

    # ------------------------------------------------------------ data and models

    def distribution(self, dist_id: str) -> Distribution:
        if self.load_distribution is not None:
            return self.load_distribution(dist_id)
        from genies.data import load_distribution

        return load_distribution(dist_id, self.spec.data_dir)

    def session(self, model: Mapping[str, Any]) -> ModelSession:
        """The process's session for ``model`` (a node's MODEL inputs), created once."""
        key = content_hash(dict(model), 32)
        if key not in self.sessions:
            device = str(model.get("device_type", "auto"))
            if self.spec.device and self.spec.device.split(":")[0] == device:
                device = self.spec.device
            self.sessions[key] = ModelSession(
                model["name"],
                device=device,
                dtype=model.get("dtype"),
                expect_sha256=model.get("weights_sha256"),
                loader=self.model_loader,
                count=self.count,
                log=self.log,
            )
        return self.sessions[key]

    def tokenizer(self, name: str, sha256: str) -> TokenizerSource:
        source = self.tokenizers.get(name)
        if source is None:
            from genies.lengths import TokenizerSource
            from genies.models.loading import prepare

            source = self.tokenizers[name] = TokenizerSource(name, prepare(name)[0])
        if source.sha256 != sha256:
            raise DataError(f"the tokenizer of {name!r} here is not the one this run was planned with")
        return source

    def context(self, node: Node, seed: int, model: Mapping[str, Any] | None) -> InterventionContext:
        return InterventionContext(
            seed=seed,
            session=self.session(model) if model is not None else None,
            activations_root=self.store.activations_dir,
            checkpoint_dir=self.store.checkpoint_dir(node.key),
            progress=self.progress,
            log=self.log,
            model_key=content_hash(dict(model), 32) if model is not None else None,
            activation_dtype=activation_dtype_of(node.inputs),
        )


def _intervention(node: Node) -> tuple[Any, Any]:
    """The intervention and its full config of a state or evaluation node (checked against the key)."""
    from genies.interventions.registry import ensure_registered, get_intervention

    name = (node.inputs["state"] if node.kind == "evaluation" else node.inputs)["intervention"]
    ensure_registered(name, node.settings.get("module"))
    iv = get_intervention(name)
    cfg = iv.make_config(node.settings.get("config", {}))
    key_cfg = (node.inputs["state"] if node.kind == "evaluation" else node.inputs)["config"]
    if iv.key_config(cfg) != key_cfg:
        raise GeniesError(f"node {node.label}: its settings' config is not the config its key was made from")
    return iv, cfg


def _environment(session: ModelSession | None) -> dict[str, Any]:
    out: dict[str, Any] = {"host": platform.node(), "pid": os.getpid()}
    if session is not None and session.loaded:
        lm = session.model()
        out.update({"device": str(getattr(lm, "device", "")), "dtype": str(getattr(lm, "dtype", ""))})
    return out


# ---------------------------------------------------------------- the kinds


class LengthsKind:
    def lookup(self, node: Node, env: NodeEnv, *, report: bool) -> LengthsRecord | None:
        return env.store.load_lengths(node.key, report=report)

    def compute(self, node: Node, env: NodeEnv) -> LengthsRecord:
        from genies.lengths import example_lengths
        from genies.pipeline.nodes import checked_split

        inputs = node.inputs
        source = env.tokenizer(node.settings.get("model", ""), inputs["tokenizer_sha256"])
        split = checked_split(env.distribution(inputs["data"]["distribution"]), inputs["data"])
        longest = example_lengths(source.tokenizer, inputs["rule"], split.examples)
        limit = source.max_length
        record = LengthsRecord(
            key=node.key,
            inputs=inputs,
            max_length=limit,
            longest=longest,
            over_length=[i for i, n in enumerate(longest) if n > limit],
            created=_now(),
        )
        env.store.save_lengths(record)
        return record


class StateKind:
    def lookup(self, node: Node, env: NodeEnv, *, report: bool) -> StoredState | None:
        stored = env.store.load_state(node.key, report=report)
        if stored is None or stored.generation < env.spec.min_generation:
            return None
        return stored

    def compute(self, node: Node, env: NodeEnv) -> StoredState:
        iv, cfg = _intervention(node)
        inputs = node.inputs
        reqs = iv.requirements(cfg)
        train = NO_TRAIN
        if inputs["train"] is not None:
            train = select_train(env.distribution(inputs["train"]["distribution"]), inputs["train"])
        needs_model = reqs.fit_model or bool(reqs.fit_activations)
        ctx = env.context(node, inputs["seed"], inputs["model"] if needs_model else None)
        if needs_model:
            env.log(f"fitting {node.label} ({len(train)} training examples)…")
        t0 = time.perf_counter()
        state = _plugin_call(iv, "fit", iv.fit, ctx, train, cfg)
        fit_s = time.perf_counter() - t0
        generation = env.spec.write_generation([])
        env.store.save_state(
            node.key,
            state,
            inputs,
            generation=generation,
            extra={"fit_s": round(fit_s, 3), "label": node.label},
        )
        env.count("states_computed")
        return StoredState(state, generation, {})


class EvaluationKind:
    def lookup(self, node: Node, env: NodeEnv, *, report: bool) -> EvaluationRecord | None:
        record = env.store.load_evaluation(node.key, report=report)
        if record is None or record.generation < env.spec.min_generation:
            return None
        state_key = node.deps[0]
        current = env.store.state_generation(state_key)
        if current is not None and record.deps.get(state_key, 0) < current:
            if report:
                env.count("stale_entries")
                env.store.warn(
                    f"evaluation {node.key} ({node.label}) was made from an older state; recomputing it"
                )
            return None
        return record

    def compute(self, node: Node, env: NodeEnv) -> EvaluationRecord:
        from genies import metrics
        from genies._meta import software_versions
        from genies.errors import ValidationError

        state_key = node.deps[0]
        stored = env.store.load_state(state_key, report=True)
        if stored is None or stored.generation < env.spec.min_generation:
            raise DependencyInvalid(state_key, f"{node.label}: its state {state_key} is missing or unusable")
        iv, cfg = _intervention(node)
        inputs = node.inputs
        sel = inputs["eval"]
        pairs = select_pairs(env.distribution(sel["distribution"]), sel)
        ctx = env.context(node, inputs["state"]["seed"], inputs["state"]["model"])
        t0 = time.perf_counter()
        try:
            scored = _plugin_call(iv, "score_pairs", iv.score_pairs, ctx, stored.state, pairs, cfg)
        except StoreError as exc:  # the intervention cannot use its state: refit it
            env.store.discard_state(state_key, f"{iv.name} cannot use it: {exc}")
            raise DependencyInvalid(state_key, str(exc)) from None
        score_s = time.perf_counter() - t0
        if list(scored.pair_ids) != sel["pair_ids"]:
            raise GeniesError(
                f"{node.label}: {iv.name}.score_pairs did not score exactly the pairs it was given"
            )
        try:
            metrics.as_probabilities(scored.p_correct)
        except ValidationError as exc:
            raise GeniesError(f"{node.label}: {iv.name} returned an invalid p(correct): {exc}") from None
        record = evaluation_record(
            node.key,
            inputs,
            scored.p_correct,
            generation=env.spec.write_generation([stored.generation]),
            deps={state_key: stored.generation},
            info=dict(scored.info),
            environment=_environment(ctx._session),
            timings={"score_s": round(score_s, 3)},
            versions=software_versions(),
            created=_now(),
        )
        env.store.save_evaluation(record)
        env.count("evaluations_computed")
        acc = record.metrics.get("accuracy", float("nan"))
        env.log(f"  {node.label}: accuracy {acc:.3f} over {record.n} pairs ({score_s:.1f} s)")
        return record


class ActivationsKind:
    def _args(self, node: Node, env: NodeEnv) -> tuple[Any, list[tuple[str, str]], tuple[str, ...], Any]:
        inputs = node.inputs
        cache = open_activation_cache(
            env.store.activations_dir, content_hash(dict(inputs["model"]), 32), activation_dtype_of(inputs)
        )
        texts = activation_texts(env.distribution(inputs["data"]["distribution"]), inputs)
        return cache, texts, tuple(inputs["spec"]["sites"]), inputs["spec"]["template"]

    def lookup(self, node: Node, env: NodeEnv, *, report: bool) -> str | None:
        cache, texts, sites, template = self._args(node, env)
        return None if cache.missing(texts, sites, template) else node.key

    def compute(self, node: Node, env: NodeEnv) -> str:
        cache, texts, sites, template = self._args(node, env)
        session = env.session(node.inputs["model"])
        cache.get(session.engine, texts, sites, template)
        env.count("activations_computed")
        return node.key


KINDS: dict[str, Any] = {
    "lengths": LengthsKind(),
    "state": StateKind(),
    "evaluation": EvaluationKind(),
    "activations": ActivationsKind(),
}
_REUSED = {"state": "states_reused", "evaluation": "evaluations_reused", "activations": "activations_reused"}


def lookup(node: Node, env: NodeEnv, *, report: bool = True) -> Any:
    """The node's verified result in the store, or None (damage and staleness reported)."""
    return KINDS[node.kind].lookup(node, env, report=report)


def count_reused(node: Node, env: NodeEnv) -> None:
    if node.kind in _REUSED:
        env.count(_REUSED[node.kind])


def resolve(node: Node, env: NodeEnv, *, checked: bool = False) -> str:
    """The result of ``node``'s key, or compute it under its lock: returns "reused" or "computed".

    ``checked``: the caller has just looked it up and found nothing usable (so damage is not
    reported twice).
    """
    kind = KINDS[node.kind]
    if not checked and kind.lookup(node, env, report=True) is not None:
        count_reused(node, env)
        return "reused"
    with env.store.lock(node.key):
        if kind.lookup(node, env, report=False) is not None:  # another process finished it meanwhile
            count_reused(node, env)
            return "reused"
        _prepare_checkpoint(env, node)
        kind.compute(node, env)
        env.store.clear_checkpoint(node.key)
    return "computed"


def _prepare_checkpoint(env: NodeEnv, node: Node) -> None:
    """A forced run never resumes from a checkpoint of an older generation."""
    if env.spec.forced is None:
        return
    d = env.store.checkpoint_dir(node.key)
    marker = d / ".genies-generation"
    try:
        old = int(marker.read_text())
    except (OSError, ValueError):
        old = -1
    if old < env.spec.forced:
        env.store.clear_checkpoint(node.key)
        d.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(env.spec.forced))


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
