"""Turn a suite of shifts into the deduplicated states and evaluations ``genies run`` needs.

Steps follow upstream-reference §3.4: (1) the baseline intervention on the base model for each unique
target, (2) the target-tuned reference for each unique target_reference, (3) the intervention trained on
each unique source, evaluated on that source's targets and on the source itself.

Cache keys (``genies.io.content_hash`` of canonical JSON):

* state key = intervention name + its config (without ``cache_exclude`` keys) + model identity (name
  or path as given, weights sha256, device type and dtype — not the folder it was found in) +
  training data (distribution id and fingerprint of the *full* train split) + seed + limit + scoring
  version;
* evaluation key = state key + evaluated data (distribution id, split, fingerprint of the full split)
  + limit + scoring version.

An intervention whose class sets ``uses_train_data = False`` declares that its scores never depend on
the training data (zero_shot): its state key then has no training data, so "zero_shot trained on S,
evaluated on T" and "the zero_shot baseline on T" are one key, computed once. Interventions that do not
say so are assumed to depend on it (few_shot does: its demonstrations come from the train split).
The baseline is always fitted on no data ("the base model"), whatever the intervention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from genies.api.intervention import Intervention, InterventionConfig
from genies.data.schema import Distribution, Split
from genies.io import content_hash
from genies.pipeline.config import RoleConfigs, TTCSpec, cache_config
from genies.records import SCORING_VERSION

KEY_LENGTH = 32
NO_TRAIN = Split("train", [], "")


class ShiftLike(Protocol):
    source: str
    target: str
    target_reference: str | None
    category: str | None
    group: str | None


def uses_train_data(iv: Intervention) -> bool:
    """Whether the intervention's scores can depend on its training split (``Intervention`` contract)."""
    return iv.uses_train_data


@dataclass
class StateTask:
    """One intervention fitted on one training split (or on none)."""

    key: str
    intervention: Intervention
    config: InterventionConfig
    train: Split  # already limited to --limit examples; NO_TRAIN for the base model
    train_distribution: str | None
    train_fingerprint: str | None
    inputs: dict[str, Any]

    @property
    def label(self) -> str:
        where = f" trained on {self.train_distribution}" if self.train_distribution else ""
        return f"{self.intervention.name}{where}"


@dataclass
class EvalTask:
    """One state scored on one distribution's test split."""

    key: str
    state: StateTask
    eval_distribution: str
    eval_fingerprint: str
    test: Split  # the full test split; its first --limit pairs are scored
    n_pairs: int  # pairs scored (after --limit), for progress
    roles: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.state.label} → {self.eval_distribution}"


@dataclass
class RowPlan:
    """The evaluation keys that fill one shift's row."""

    shift: ShiftLike
    target_reference: str
    generalization: str
    source_id: str
    baseline: str
    ttc: dict[str, str]  # TTC intervention → evaluation key (one entry unless best-of)


@dataclass
class Plan:
    states: dict[str, StateTask]
    evaluations: list[EvalTask]  # deduplicated, in execution order
    rows: list[RowPlan]

    def evaluation(self, key: str) -> EvalTask:
        return self._by_key[key]

    def __post_init__(self) -> None:
        self._by_key = {e.key: e for e in self.evaluations}


def _pairs_count(split: Split, limit: int | None) -> int:
    n = sum(max(len(ex.responses) - 1, 0) for ex in split.examples)
    return n if limit is None else min(n, limit)


class _Builder:
    def __init__(
        self,
        distributions: Mapping[str, Distribution],
        model: Mapping[str, Any],
        seed: int,
        limit: int | None,
    ):
        self.dists, self.model, self.seed, self.limit = distributions, dict(model), seed, limit
        self.states: dict[str, StateTask] = {}
        self.evals: dict[str, EvalTask] = {}

    def state(self, iv: Intervention, cfg: InterventionConfig, train_id: str | None) -> StateTask:
        if train_id is not None and not uses_train_data(iv):
            train_id = None
        split = self.dists[train_id].train if train_id is not None else NO_TRAIN
        fingerprint = split.fingerprint if train_id is not None else None
        inputs = {
            "kind": "state",
            "intervention": iv.name,
            "config": cache_config(iv, cfg),
            "model": self.model,
            "train": None
            if train_id is None
            else {"distribution": train_id, "split": "train", "fingerprint": fingerprint},
            "seed": self.seed,
            "limit": self.limit,
            "scoring_version": SCORING_VERSION,
        }
        key = content_hash(inputs, KEY_LENGTH)
        if key not in self.states:
            self.states[key] = StateTask(key, iv, cfg, split.head(self.limit), train_id, fingerprint, inputs)
        return self.states[key]

    def evaluation(self, state: StateTask, dist_id: str, role: str) -> str:
        test = self.dists[dist_id].test
        inputs = {
            "kind": "evaluation",
            "state": state.key,
            "eval": {"distribution": dist_id, "split": "test", "fingerprint": test.fingerprint},
            "limit": self.limit,
            "scoring_version": SCORING_VERSION,
        }
        key = content_hash(inputs, KEY_LENGTH)
        task = self.evals.get(key)
        if task is None:
            task = self.evals[key] = EvalTask(
                key, state, dist_id, test.fingerprint, test, _pairs_count(test, self.limit)
            )
        if role not in task.roles:
            task.roles.append(role)
        return key


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def build_plan(
    shifts: Sequence[ShiftLike],
    distributions: Mapping[str, Distribution],
    *,
    main: Intervention,
    baseline: Intervention,
    ttc: TTCSpec,
    ttc_interventions: Mapping[str, Intervention],
    configs: RoleConfigs,
    model_identity: Mapping[str, Any],
    seed: int,
    limit: int | None,
) -> Plan:
    """All states and evaluations for ``shifts``, deduplicated by key, in upstream's step order."""
    b = _Builder(distributions, model_identity, seed, limit)
    ref = {id(s): s.target_reference or s.target for s in shifts}

    base_state = b.state(baseline, configs.baseline, None)
    baseline_keys = {t: b.evaluation(base_state, t, "baseline") for t in _unique([s.target for s in shifts])}

    ttc_keys: dict[str, dict[str, str]] = {}
    for r in _unique([ref[id(s)] for s in shifts]):
        ttc_keys[r] = {}
        for name in ttc.interventions:
            st = b.state(ttc_interventions[name], configs.ttc[name], r)
            ttc_keys[r][name] = b.evaluation(st, r, "target-tuned")

    gen_keys: dict[tuple[str, str], str] = {}
    src_keys: dict[str, str] = {}
    for src in _unique([s.source for s in shifts]):
        st = b.state(main, configs.intervention, src)
        for tgt in _unique([s.target for s in shifts if s.source == src]):
            gen_keys[(src, tgt)] = b.evaluation(st, tgt, "generalization")
        src_keys[src] = b.evaluation(st, src, "source")

    rows = [
        RowPlan(
            shift=s,
            target_reference=ref[id(s)],
            generalization=gen_keys[(s.source, s.target)],
            source_id=src_keys[s.source],
            baseline=baseline_keys[s.target],
            ttc=dict(ttc_keys[ref[id(s)]]),
        )
        for s in shifts
    ]
    return Plan(b.states, list(b.evals.values()), rows)


def needed_distributions(shifts: Sequence[ShiftLike]) -> list[str]:
    """Every distribution id a suite touches (sources, targets, target references), first-seen order."""
    ids: list[str] = []
    for s in shifts:
        ids += [s.source, s.target, s.target_reference or s.target]
    return _unique(ids)
