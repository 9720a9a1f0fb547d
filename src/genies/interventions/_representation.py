"""Shared machinery of the representation interventions (mms, lat_*, cra, ccs, lat_pca, linear_probe).

They never run the model themselves: every activation comes from ``ctx.activations`` (the activation
cache under ``<store>/activations``), which the planner fills first through ``activations`` nodes
declared in ``requirements``. So methods that read the same texts share one forward pass per text, and
a second method over the same suite computes none.

Conventions (docs/interventions.md):

* a *pair* is ``(prompt, correct, incorrect)``; its features are ``pos`` (the correct response's
  activations) and ``neg`` (the incorrect one's), each ``[n_pairs, U, d]`` where a *unit* U is a
  (layer, head) for ``heads`` or a layer for ``resid``;
* every random choice derives from ``ctx.seed`` (numpy ``default_rng`` and sklearn's ``random_state``);
* p(correct) never depends on response order: each method's pair score is antisymmetric in the two
  responses, or (mass-mean calibrator) averaged over both presentation orders.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pydantic

from genies.api.intervention import (
    ActivationSpec,
    Intervention,
    InterventionConfig,
    InterventionState,
    LengthRule,
    Requirements,
    ScoredPairs,
    pair_texts,
    scored_pairs,
)
from genies.errors import ConfigError, GeniesError, StoreError

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

# ---------------------------------------------------------------- templates (upstream §4.9-§4.11)

#: Stimulus 1 of LAT and MMS: the raw prompt + response (``None`` renders ``"{prompt}{response}"``).
RAW_TEMPLATE: str | None = None
#: LAT stimulus 2 (§4.9): the "Consider..." line goes after the prompt's "### Response:\n".
LAT_STIM_2_TEMPLATE = (
    "{prompt}Consider the extent to which the responder follows the instruction below.\n"
    "{response}\n\nThe probability that the responder followed the instruction"
)
_QUESTION = "\n\n### Does the responder successfully follow the instruction?\n"
#: CRA's and CCS's "Yes" continuation (§4.10, §4.11).
YES_TEMPLATE = "{prompt}{response}" + _QUESTION + "Yes"
#: CRA's "No" continuation, and CCS's in pairwise mode (the space after ``###`` restored, §5.14).
NO_TEMPLATE = "{prompt}{response}" + _QUESTION + "No"
#: CCS's "No" continuation as upstream wrote it (no space after ``###``), used by ``mode="upstream"``.
NO_TEMPLATE_CCS_UPSTREAM = (
    "{prompt}{response}\n\n###Does the responder successfully follow the instruction?\nNo"
)


def activation_requirements(sites: tuple[str, ...], templates: Sequence[str | None]) -> Requirements:
    """Requirements of a method that reads ``sites`` of the texts each of ``templates`` renders.

    Fit and scoring read only cached activations (``fit_model=False, score_model=False``); the
    training activations are of one pair per example (seeded by the run's seed, as upstream's
    probes); examples whose rendered text overflows the context are dropped at the data level."""
    specs = tuple(ActivationSpec(sites=sites, template=t, pairs="one_per_example") for t in templates)
    rules = tuple(LengthRule("text", t) for t in templates)
    return Requirements(
        train_data=True,
        fit_model=False,
        score_model=False,
        fit_activations=specs,
        score_activations=specs,
        lengths=rules,
        train_lengths=rules,
    )


# ---------------------------------------------------------------- reading activations


def train_pairs(train: Any, seed: int) -> list[Pair]:
    """One pair per training example, seeded by the run's seed (what the fit activations node embeds)."""
    pairs = train.to_pairs("one_per_example", seed=seed)
    if len(pairs) < 2:
        raise GeniesError(
            f"representation methods need at least 2 training pairs, got {len(pairs)} (raise --limit)"
        )
    return pairs


def pair_features(
    ctx: InterventionContext, pairs: Sequence[Pair], site: str, template: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(pos, neg)``: the ``site`` activations of each pair's correct and incorrect response, as
    float32 ``[n_pairs, U, d]`` (``heads`` [n, L, H, d] is flattened to units ``L·H``; ``resid``
    [n, L, D] keeps layers as units; ``final`` [n, D] becomes one unit)."""
    texts = pair_texts(pairs)
    where = {t: i for i, t in enumerate(texts)}
    acts = ctx.activations(texts, (site,), template)[site]
    arr = acts.detach().to("cpu").float().numpy()
    if site == "heads":
        arr = arr.reshape(arr.shape[0], arr.shape[1] * arr.shape[2], arr.shape[3])
    elif site == "final":
        arr = arr[:, None, :]
    pos = arr[[where[(p.prompt, p.correct)] for p in pairs]]
    neg = arr[[where[(p.prompt, p.incorrect)] for p in pairs]]
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise GeniesError(f"non-finite {site} activations (an over-length text that was not dropped?)")
    return pos, neg


class _ArrayReader:
    """``SiteReader``'s interface over an array already in memory (contexts without a cache reader)."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape = arr, arr.shape

    def read(self, block: slice = slice(None)) -> np.ndarray:
        return self.arr[:, block]


class PairSite:
    """The ``pos``/``neg`` features of pairs at one site, read a block of layers at a time.

    What ``pair_features`` returns, without holding it: ``layers(l0, l1)`` is ``(pos, neg)`` of the
    units of layers ``l0 … l1−1`` (``[n_pairs, units, d]``), read memory-mapped from the activation
    cache (``ctx.activation_reader``), and ``units(idx)`` gathers chosen units. Values are exactly
    those of ``pair_features`` (the same float32 numbers, gathered the same way). ``alpha`` combines
    two sites (cra: ``yes − alpha·no``)."""

    def __init__(self, ctx: Any, pairs: Sequence[Pair], site: str, template: str | None) -> None:
        texts = pair_texts(pairs)
        where = {t: i for i, t in enumerate(texts)}
        self.site = site
        self.pos_rows = np.array([where[(p.prompt, p.correct)] for p in pairs], dtype=np.int64)
        self.neg_rows = np.array([where[(p.prompt, p.incorrect)] for p in pairs], dtype=np.int64)
        open_reader = getattr(ctx, "activation_reader", None)
        if open_reader is None:
            acts = ctx.activations(texts, (site,), template)[site]
            self.reader: Any = _ArrayReader(acts.detach().to("cpu").float().numpy())
        else:
            self.reader = open_reader(texts, site, template)
        shape = tuple(self.reader.shape)
        self.n_layers = shape[1]
        self.per_layer = shape[2] if site == "heads" else 1  # units per layer
        self.dim = shape[-1]
        self.others: list[tuple[PairSite, float]] = []

    def minus(self, other: PairSite, alpha: float) -> PairSite:
        """This site's features minus ``alpha`` times ``other``'s (same pairs and shapes)."""
        self.others.append((other, alpha))
        return self

    @property
    def n_pairs(self) -> int:
        return len(self.pos_rows)

    @property
    def n_units(self) -> int:
        return self.n_layers * self.per_layer

    def _own(self, l0: int, l1: int) -> tuple[np.ndarray, np.ndarray]:
        arr = self.reader.read(slice(l0, l1))
        if self.site == "heads":
            arr = arr.reshape(arr.shape[0], arr.shape[1] * arr.shape[2], arr.shape[3])
        pos, neg = arr[self.pos_rows], arr[self.neg_rows]
        if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
            raise GeniesError(
                f"non-finite {self.site} activations (an over-length text that was not dropped?)"
            )
        return pos, neg

    def layers(self, l0: int, l1: int) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = self._own(l0, l1)
        for other, alpha in self.others:
            p2, n2 = other.layers(l0, l1)
            pos, neg = pos - alpha * p2, neg - alpha * n2
        return pos, neg

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(pos, neg)`` of each layer in turn: units ``[l·per_layer, (l+1)·per_layer)``."""
        for layer in range(self.n_layers):
            yield self.layers(layer, layer + 1)

    def diff(self, layer: int) -> np.ndarray:
        """float64 ``pos − neg`` of one layer's single unit (``resid``): ``[n_pairs, d]``."""
        pos, neg = self.layers(layer, layer + 1)
        return (pos[:, 0] - neg[:, 0]).astype(np.float64)

    def units(self, idx: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(pos[rows][:, idx], neg[rows][:, idx])`` (all pairs when ``rows`` is None), reading only
        the layers that hold the units. The arrays have the memory layout numpy gives that
        expression (unit-major, ``[k, n, d]`` in memory, seen as ``[n, k, d]``), so sums over ``d``
        round exactly as they did on the whole array."""
        idx = np.asarray(idx, dtype=np.int64)
        n = self.n_pairs if rows is None else len(rows)
        pos = np.empty((len(idx), n, self.dim), dtype=np.float32)
        neg = np.empty_like(pos)
        for layer in sorted({int(u) // self.per_layer for u in idx}):
            here = np.flatnonzero(idx // self.per_layer == layer)
            p, q = self.layers(layer, layer + 1)
            if rows is not None:
                p, q = p[rows], q[rows]
            pick = idx[here] % self.per_layer
            pos[here], neg[here] = p[:, pick].transpose(1, 0, 2), q[:, pick].transpose(1, 0, 2)
        return pos.transpose(1, 0, 2), neg.transpose(1, 0, 2)


def split_pairs(n: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's split (§4.7 step 3): ``int(n·(1−val_ratio))`` training pairs drawn without replacement,
    the rest validation; seeded by ``seed``. Both index arrays sorted."""
    n_train = min(max(int(n * (1 - val_ratio)), 1), n - 1)
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(n, n_train, replace=False))
    val = np.setdiff1d(np.arange(n), train)
    return train, val


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(x, dtype=np.float64))


def pair_scale(delta: np.ndarray) -> float:
    """``a`` of ``p = sigmoid(a·Δ)``: a no-intercept logistic fit on ±Δ (labels 1 / 0)."""
    from sklearn.linear_model import LogisticRegression

    if not np.any(delta != 0):
        return 0.0
    x = np.r_[delta, -delta][:, None]
    y = np.r_[np.ones(len(delta)), np.zeros(len(delta))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(fit_intercept=False, max_iter=1000).fit(x, y)
    return float(clf.coef_[0, 0])


# ---------------------------------------------------------------- per-unit logistic probes


def probe_accuracies(
    pos: np.ndarray, neg: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int, progress: Any = None
) -> np.ndarray:
    """Validation accuracy ``[U]`` of one ``LogisticRegression(random_state=seed, max_iter=1000)`` per
    unit, fitted on the individual responses of the training pairs (label 1 correct, 0 incorrect) and
    scored on those of the validation pairs (upstream §4.7 step 5). Fitted unit by unit, so only one
    unit's ``[n, d]`` slice is copied at a time."""
    from sklearn.linear_model import LogisticRegression

    n_units = pos.shape[1]
    y_tr = np.r_[np.ones(len(train)), np.zeros(len(train))]
    y_va = np.r_[np.ones(len(val)), np.zeros(len(val))]
    out = np.zeros(n_units, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for u in range(n_units):
            x_tr = np.concatenate([pos[train, u], neg[train, u]])
            x_va = np.concatenate([pos[val, u], neg[val, u]])
            clf = LogisticRegression(random_state=seed, max_iter=1000).fit(x_tr, y_tr)
            out[u] = clf.score(x_va, y_va)
            if progress is not None:
                progress(1)
    return out


def top_units(acc: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` units of highest accuracy, best first (ties: the lower unit index first)."""
    return np.argsort(-acc, kind="stable")[:k]


def mean_cosine_feature(diff: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``x = 0.5·(1 + mean over units of cos(diff_u, direction_u))`` for ``diff`` [n, k, d], directions
    [k, d] (upstream's calibration feature)."""
    num = (diff * directions[None]).sum(-1)
    den = np.linalg.norm(diff, axis=-1) * np.linalg.norm(directions, axis=-1)[None]
    cos = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return 0.5 * (1.0 + cos.mean(-1))


# ---------------------------------------------------------------- mass-mean shift (mms, lat_stim_*, cra)


class MassMeanConfig(InterventionConfig):
    """Upstream's defaults (§4.7): 16 units, 30% validation pairs, the 1-D calibrator on."""

    val_ratio: float = pydantic.Field(0.3, gt=0.0, lt=1.0, description="Share of pairs held out.")
    do_calibration: bool = pydantic.Field(
        True, description="Fit the 1-D logistic calibrator on the validation pairs (else p = x)."
    )


@dataclass
class MassMeanFit:
    units: np.ndarray  # [k] selected unit indices, best first
    directions: np.ndarray  # [k, d] mass-mean vectors (unnormalised)
    accuracy: np.ndarray  # [U] per-unit probe validation accuracy
    coef: float
    intercept: float
    calibrated: bool
    n_train: int
    n_val: int


#: Upstream's number of heads / layers kept (§4.7, §4.8).
DEFAULT_UNITS = 16


def resolve_k(cfg: InterventionConfig, field: str, n_units: int, what: str, ctx: Any) -> int:
    """The number of units to keep. ``None`` (the default) is upstream's 16, capped at the model's
    count (a tiny model has fewer than 16 heads); an explicit value above the model's is an error."""
    k = getattr(cfg, field)
    if k is None:
        if n_units < DEFAULT_UNITS:
            ctx.log(
                f"{field}: upstream's {DEFAULT_UNITS} is more than the model's {n_units} {what}; using all"
            )
        return min(DEFAULT_UNITS, n_units)
    if int(k) > n_units:
        raise ConfigError(f"{field}={k} is more than the model's {n_units} {what}")
    return int(k)


def fit_mass_mean(
    ctx: InterventionContext, feats: PairSite, k: int, cfg: MassMeanConfig, what: str
) -> MassMeanFit:
    """Upstream's mass-mean shift (§4.7 steps 3-7) on the features ``feats`` ([n, U, d] as
    ``pos``/``neg``), streamed layer by layer: the mass-mean directions (means over pairs, per
    element) and the per-unit probes of one layer's units need only that layer's block."""
    n = feats.n_pairs
    train, val = split_pairs(n, cfg.val_ratio, ctx.seed)
    directions_parts, acc_parts = [], []
    with ctx.progress(feats.n_units, f"probing {feats.n_units} {what}") as advance:
        for pos, neg in feats.blocks():
            directions_parts.append(pos.mean(0) - neg.mean(0))  # over train ∪ val pairs, as upstream
            acc_parts.append(probe_accuracies(pos, neg, train, val, ctx.seed, advance))
    directions_all, acc = np.concatenate(directions_parts), np.concatenate(acc_parts)
    units = top_units(acc, k)
    directions = directions_all[units]
    coef, intercept, calibrated = 1.0, 0.0, False
    if cfg.do_calibration and len(val) >= 2:
        pos, neg = feats.units(units, rows=val)
        coef, intercept = _alternating_calibrator(pos, neg, directions)
        calibrated = True
    elif cfg.do_calibration:
        ctx.log("mass-mean calibrator: fewer than 2 validation pairs; using p = x")
    return MassMeanFit(units, directions, acc, coef, intercept, calibrated, len(train), len(val))


def _alternating_calibrator(pos: np.ndarray, neg: np.ndarray, directions: np.ndarray) -> tuple[float, float]:
    """Upstream's calibrator (§4.7 step 7): pair i gets sign s = −1, +1, −1, …;
    ``d = s·(incorrect − correct)`` with label 1 for s = −1 (d = correct − incorrect), 0 for s = +1;
    a 1-D ``LogisticRegression(penalty=None)`` on ``x = mean-cosine feature of d``."""
    from sklearn.linear_model import LogisticRegression

    s = np.where(np.arange(len(pos)) % 2 == 0, -1.0, 1.0)
    d = s[:, None, None] * (neg - pos)
    x = mean_cosine_feature(d, directions)
    y = (s < 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(penalty=None, max_iter=1000).fit(x[:, None], y)
    return float(clf.coef_[0, 0]), float(clf.intercept_[0])


def mass_mean_p_correct(
    pos: np.ndarray, neg: np.ndarray, directions: np.ndarray, coef: float, intercept: float, calibrated: bool
) -> tuple[np.ndarray, np.ndarray]:
    """p(correct) for pairs with selected-unit features ``pos``/``neg`` [n, k, d], and the feature x.

    Upstream shuffles each pair (unseeded) and reads ``P(label 1 | x(second − first))``. Here both
    presentation orders are averaged: ``p = ½·(P₁(x) + 1 − P₁(1 − x))`` with ``x`` the feature of
    ``correct − incorrect`` (the other order's feature is ``1 − x``), which is the shuffle's
    expectation and makes p independent of response order."""
    x = mean_cosine_feature(pos - neg, directions)
    if not calibrated:
        return x, x
    p1 = sigmoid(coef * x + intercept)
    p2 = sigmoid(coef * (1.0 - x) + intercept)
    return 0.5 * (p1 + 1.0 - p2), x


def mass_mean_state(
    name: str, fit: MassMeanFit, meta: dict[str, Any], unit_names: list[Any]
) -> InterventionState:
    """The state of a mass-mean method: tensors + JSON meta with the chosen units and their accuracies."""
    import torch

    chosen = [
        {"unit": unit_names[int(u)], "probe_accuracy": round(float(fit.accuracy[u]), 6)} for u in fit.units
    ]
    meta = {
        "intervention": name,
        **meta,
        "selected": chosen,
        "calibrator": {"coef": fit.coef, "intercept": fit.intercept, "fitted": fit.calibrated},
        "n_train_pairs": fit.n_train,
        "n_val_pairs": fit.n_val,
    }
    tensors = {
        "units": torch.tensor(fit.units, dtype=torch.int64),
        "directions": torch.tensor(fit.directions, dtype=torch.float32),
        "probe_accuracy": torch.tensor(fit.accuracy, dtype=torch.float32),
    }
    return InterventionState(meta=meta, tensors=tensors)


def check_state(name: str, state: InterventionState, tensors: Sequence[str], meta: Sequence[str]) -> None:
    """A state this intervention can use, else StoreError (the pipeline then refits it)."""
    if state.meta.get("intervention") != name:
        raise StoreError(f"the state is not a {name} state (meta names {state.meta.get('intervention')!r})")
    missing = [t for t in tensors if t not in state.tensors] + [m for m in meta if m not in state.meta]
    if missing:
        raise StoreError(f"the {name} state is corrupt: missing {', '.join(missing)}")


def selected_info(state: InterventionState) -> dict[str, Any]:
    """What an evaluation's ``info`` says about the state: chosen units and their probe accuracies."""
    keys = (
        "site",
        "template_name",
        "selected",
        "calibrator",
        "layer",
        "layer_accuracy",
        "mode",
        "n_train_pairs",
    )
    return {k: state.meta[k] for k in keys if k in state.meta}


def unit_names(site: str, shape: tuple[int, ...]) -> list[Any]:
    """Names of the units of a site: ``[layer, head]`` for heads, the layer index for resid."""
    if site == "heads":
        n_layers, n_heads = shape
        return [[layer, head] for layer in range(n_layers) for head in range(n_heads)]
    return list(range(shape[0]))


# ---------------------------------------------------------------- the mass-mean intervention base


class MassMeanIntervention(Intervention):
    """mms / lat_stim_1 / lat_stim_2 / cra: features → mass-mean directions → probe-selected units →
    mean cosine of the pair difference → the alternating-sign calibrator (upstream §4.7-§4.10).

    Subclasses set ``site``, ``templates``, ``count_field`` (the config field holding k) and
    ``template_name``; cra overrides ``features``."""

    site: ClassVar[str] = "heads"
    templates: ClassVar[tuple[str | None, ...]] = (RAW_TEMPLATE,)
    count_field: ClassVar[str] = "num_intervention_heads"
    template_name: ClassVar[str] = "RAW_TEMPLATE"

    def requirements(self, config: InterventionConfig) -> Requirements:
        return activation_requirements((self.site,), self.templates)

    def features(self, ctx: InterventionContext, pairs: Sequence[Pair], cfg: Any) -> PairSite:
        return PairSite(ctx, pairs, self.site, self.templates[0])

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        cfg = self.check_config(config)
        pairs = train_pairs(train, ctx.seed)
        feats = self.features(ctx, pairs, cfg)
        shape = (feats.n_layers, feats.per_layer) if self.site == "heads" else (feats.n_units,)
        what = "attention heads" if self.site == "heads" else "layers"
        if self.site == "heads":
            what = f"attention heads ({shape[0]} layers × {shape[1]})"
        k = resolve_k(cfg, self.count_field, feats.n_units, what, ctx)
        fit = fit_mass_mean(ctx, feats, k, cfg, "heads" if self.site == "heads" else "layers")
        meta = {"site": self.site, "template_name": self.template_name, "unit_shape": list(shape)}
        state = mass_mean_state(self.name, fit, meta, unit_names(self.site, shape))
        best = state.meta["selected"][0]
        ctx.log(
            f"{self.name}: {k} units chosen; best {best['unit']} (val accuracy {best['probe_accuracy']:.3f})"
        )
        return state

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        check_state(self.name, state, ("units", "directions", "probe_accuracy"), ("calibrator", "selected"))
        if not pairs:
            return scored_pairs(pairs, np.zeros(0), **selected_info(state))
        feats = self.features(ctx, pairs, cfg)
        units = state.tensors["units"].numpy()
        directions = state.tensors["directions"].float().numpy()
        if units.max(initial=0) >= feats.n_units or directions.shape[1:] != (feats.dim,):
            raise StoreError(f"the {self.name} state does not match these activations' shapes")
        pos, neg = feats.units(units)
        cal = state.meta["calibrator"]
        p, _ = mass_mean_p_correct(
            pos,
            neg,
            directions,
            float(cal["coef"]),
            float(cal["intercept"]),
            bool(cal["fitted"]),
        )
        return scored_pairs(pairs, np.clip(p, 0.0, 1.0), **selected_info(state))
