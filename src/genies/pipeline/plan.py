"""Turn a suite of shifts into the job graph ``genies run`` executes.

Steps follow upstream-reference §3.4: (1) the baseline intervention on the base model for each unique
target, (2) the target-tuned reference for each unique target_reference, (3) the intervention trained on
each unique source, evaluated on that source's targets and on the source itself.

What each intervention declares (``Intervention.requirements``) decides the nodes and their keys:

* ``train_data=False``: the state has no training data, so "zero_shot trained on S, evaluated on T" and
  "the zero_shot baseline on T" are one node, computed once;
* ``fit_activations`` / ``score_activations``: ``activations`` nodes that the state / the evaluation
  depend on (one per model, selection of data, template and sites — deduplicated by key);
* ``lengths`` / ``train_lengths``: over-length examples are dropped at the data level. Every
  evaluation of one distribution in a run scores the same pairs: the first ``--limit`` pairs minus
  the examples too long under *any* rule of *any* intervention that evaluates that distribution in
  the run. Those pair ids are part of each evaluation's key, so evaluations whose drops agree are
  shared between runs, and rows never compare different pairs.

The baseline is always fitted on no data ("the base model"), whatever the intervention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from genies.api.intervention import Intervention, InterventionConfig, LengthRule
from genies.data.schema import Distribution
from genies.pipeline.config import RoleConfigs, TTCSpec
from genies.pipeline.graph import Graph, Node
from genies.pipeline.nodes import (
    activations_node,
    eval_selection,
    evaluation_node,
    state_node,
    train_selection,
)

#: (distribution id, split, rules) → (indices of the split's examples too long under any of the rules,
#: the ``lengths`` nodes that say so — already resolved).
OverLength = Callable[[str, str, tuple[LengthRule, ...]], tuple[set[int], list[Node]]]


def no_over_length(dist_id: str, split: str, rules: tuple[LengthRule, ...]) -> tuple[set[int], list[Node]]:
    if rules:
        raise ValueError("length rules need a tokenizer: pass over_length")
    return set(), []


class ShiftLike(Protocol):
    source: str
    target: str
    target_reference: str | None
    category: str | None
    group: str | None


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
    """The graph and the rows it fills."""

    graph: Graph
    rows: list[RowPlan] = field(default_factory=list)

    @property
    def evaluations(self) -> list[Node]:
        return self.graph.of_kind("evaluation")

    @property
    def states(self) -> dict[str, Node]:
        return {n.key: n for n in self.graph.of_kind("state")}

    def evaluation(self, key: str) -> Node:
        return self.graph[key]

    def state_key(self, evaluation_key: str) -> str:
        return self.graph[evaluation_key].deps[0]

    def to_json(self) -> dict[str, Any]:
        return {"nodes": self.graph.to_json()}


@dataclass
class _Request:
    iv: Intervention
    cfg: InterventionConfig
    train_id: str | None
    dist_id: str
    split: str


class Planner:
    """Collect evaluations first (to know each distribution's length rules), then build the graph."""

    def __init__(
        self,
        distributions: Mapping[str, Distribution],
        model: Mapping[str, Any],
        *,
        seed: int,
        limit: int | None,
        train_limit: int | None | str = "limit",
        over_length: OverLength = no_over_length,
        activation_dtype: str = "float32",
    ) -> None:
        """``limit``: pairs per evaluation; ``train_limit``: examples per training split (default:
        the same number, as ``genies run --limit``; ``genies evaluate`` trains on whole splits);
        ``activation_dtype``: the activation cache's storage dtype (part of the keys it touches)."""
        self.dists, self.model, self.seed, self.limit = distributions, dict(model), seed, limit
        self.activation_dtype = activation_dtype
        self.train_limit: int | None = limit if train_limit == "limit" else train_limit  # type: ignore[assignment]
        self.over_length = over_length
        self.requests: list[_Request] = []

    def request(
        self,
        iv: Intervention,
        cfg: InterventionConfig,
        train_id: str | None,
        dist_id: str,
        split: str = "test",
    ) -> int:
        """Ask for ``iv`` fitted on ``train_id`` (None: on no data) evaluated on ``dist_id``."""
        self.requests.append(_Request(iv, cfg, train_id, dist_id, split))
        return len(self.requests) - 1

    def _rules(self) -> dict[tuple[str, str], tuple[LengthRule, ...]]:
        rules: dict[tuple[str, str], dict[LengthRule, None]] = {}
        for r in self.requests:
            target = rules.setdefault((r.dist_id, r.split), {})
            for rule in r.iv.requirements(r.cfg).lengths:
                target.setdefault(rule)
        return {k: tuple(v) for k, v in rules.items()}

    def _state(self, graph: Graph, r: _Request) -> Node:
        reqs = r.iv.requirements(r.cfg)
        train_id = r.train_id if reqs.train_data else None
        train, checks = None, []
        if train_id is not None:
            dist = self.dists[train_id]
            head = dist.train.head(self.train_limit)
            over, checks = self._over(graph, train_id, "train", tuple(reqs.train_lengths))
            train = train_selection(dist, self.train_limit, {ex.index for ex in head.examples} & over)
        dtype = self.activation_dtype
        deps = [
            graph.add(activations_node(self.model, train, spec, self.seed, dtype=dtype)).key
            for spec in reqs.fit_activations
            if train is not None
        ]
        node = state_node(r.iv, r.cfg, self.model, train, self.seed, deps + checks, activation_dtype=dtype)
        return graph.add(node)

    def _over(
        self, graph: Graph, dist_id: str, split: str, rules: tuple[LengthRule, ...]
    ) -> tuple[set[int], list[str]]:
        """Over-length example indices under ``rules`` and the keys of the lengths nodes behind them."""
        if not rules:
            return set(), []
        over, nodes = self.over_length(dist_id, split, rules)
        return over, [graph.add(n).key for n in nodes]

    def build(self) -> tuple[Graph, list[str]]:
        """The graph and, per request, its evaluation key."""
        graph = Graph()
        rules = self._rules()
        over: dict[tuple[str, str], tuple[set[int], list[str]]] = {}
        keys = []
        for r in self.requests:
            where = (r.dist_id, r.split)
            if where not in over:
                over[where] = self._over(graph, r.dist_id, r.split, rules[where])
            state = self._state(graph, r)
            sel = eval_selection(self.dists[r.dist_id], r.split, self.limit, over[where][0])
            reqs = r.iv.requirements(r.cfg)
            acts = [
                graph.add(activations_node(self.model, sel, spec, None, dtype=self.activation_dtype)).key
                for spec in reqs.score_activations
            ]
            node = evaluation_node(state, sel, [*acts, *over[where][1]], needs_model=reqs.score_model)
            keys.append(graph.add(node).key)
        return graph, keys


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
    over_length: OverLength = no_over_length,
    activation_dtype: str = "float32",
) -> Plan:
    """All nodes for ``shifts``, deduplicated by key, in upstream's step order."""
    p = Planner(
        distributions,
        model_identity,
        seed=seed,
        limit=limit,
        over_length=over_length,
        activation_dtype=activation_dtype,
    )
    ref = {id(s): s.target_reference or s.target for s in shifts}
    base_req = {
        t: p.request(baseline, configs.baseline, None, t) for t in _unique([s.target for s in shifts])
    }
    ttc_req: dict[str, dict[str, int]] = {}
    for r in _unique([ref[id(s)] for s in shifts]):
        ttc_req[r] = {
            name: p.request(ttc_interventions[name], configs.ttc[name], r, r) for name in ttc.interventions
        }
    gen_req: dict[tuple[str, str], int] = {}
    src_req: dict[str, int] = {}
    for src in _unique([s.source for s in shifts]):
        for tgt in _unique([s.target for s in shifts if s.source == src]):
            gen_req[(src, tgt)] = p.request(main, configs.intervention, src, tgt)
        src_req[src] = p.request(main, configs.intervention, src, src)
    graph, keys = p.build()
    rows = [
        RowPlan(
            shift=s,
            target_reference=ref[id(s)],
            generalization=keys[gen_req[(s.source, s.target)]],
            source_id=keys[src_req[s.source]],
            baseline=keys[base_req[s.target]],
            ttc={name: keys[i] for name, i in ttc_req[ref[id(s)]].items()},
        )
        for s in shifts
    ]
    return Plan(graph, rows)


def needed_distributions(shifts: Sequence[ShiftLike]) -> list[str]:
    """Every distribution id a suite touches (sources, targets, target references), first-seen order."""
    ids: list[str] = []
    for s in shifts:
        ids += [s.source, s.target, s.target_reference or s.target]
    return _unique(ids)
