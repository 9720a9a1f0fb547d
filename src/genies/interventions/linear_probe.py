"""``linear_probe``: logistic regression on the last-token residual difference of a pair.

Per residual-stream layer: features ``d = resid(correct) − resid(incorrect)`` of the training pairs,
scaled per dimension by their RMS (no centring, so the probe stays antisymmetric), and a
``LogisticRegression(fit_intercept=False, C=C)`` on ``±d`` (labels 1 / 0) fitted on a seeded 70% of
the pairs; the layer of best validation accuracy (ties: the lower layer) is refitted on all training
pairs. ``p(correct) = sigmoid(w·d)``: swapping the responses gives ``1 − p``. Not in the paper.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    Requirements,
    ScoredPairs,
)
from genies.errors import ConfigError, StoreError
from genies.interventions._representation import (
    RAW_TEMPLATE,
    PairSite,
    activation_requirements,
    check_state,
    sigmoid,
    split_pairs,
    train_pairs,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

#: The stimulus: the raw ``prompt + response``.
LINEAR_PROBE_TEMPLATE = RAW_TEMPLATE


class LinearProbeConfig(InterventionConfig):
    """``layer`` (None: chosen on validation pairs), ``C`` (1.0, inverse L2 strength), ``val_ratio``."""

    layer: int | None = pydantic.Field(None, ge=0, description="Residual layer; None = best on validation.")
    C: float = pydantic.Field(1.0, gt=0, description="Inverse L2 regularisation strength (sklearn's C).")
    val_ratio: float = pydantic.Field(0.3, gt=0.0, lt=1.0)


def _scaled(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``d`` [n, D] divided per dimension by its RMS over the pairs (1 where that is 0), and the RMS."""
    rms = np.sqrt(np.mean(d**2, axis=0))
    rms[rms == 0] = 1.0
    return d / rms[None], rms


def _probe(d: np.ndarray, c: float, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([d, -d])
    y = np.r_[np.ones(len(d)), np.zeros(len(d))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(fit_intercept=False, C=c, max_iter=1000, random_state=seed).fit(x, y)
    return clf.coef_[0].astype(np.float64)


@register_intervention("linear_probe")
class LinearProbe(Intervention):
    """Logistic regression on one layer's paired last-token residual difference."""

    Config: ClassVar[type[InterventionConfig]] = LinearProbeConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        return activation_requirements(("resid",), (LINEAR_PROBE_TEMPLATE,))

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        import torch

        cfg = self.check_config(config)
        pairs = train_pairs(train, ctx.seed)
        feats = PairSite(ctx, pairs, "resid", LINEAR_PROBE_TEMPLATE)  # read one layer at a time
        n_layers = feats.n_layers
        if cfg.layer is not None and cfg.layer >= n_layers:
            raise ConfigError(f"layer={cfg.layer} is not a layer of the model (it has {n_layers})")
        tr, va = split_pairs(feats.n_pairs, cfg.val_ratio, ctx.seed)
        acc, rms = np.zeros(n_layers), np.zeros((n_layers, feats.dim))
        with ctx.progress(n_layers, "probing layers") as advance:
            for layer in range(n_layers):
                d, rms[layer] = _scaled(feats.diff(layer))
                s = d[va] @ _probe(d[tr], cfg.C, ctx.seed)
                acc[layer] = float(np.mean((s > 0) + 0.5 * (s == 0)))
                advance(1)
        layer = int(np.argsort(-acc, kind="stable")[0]) if cfg.layer is None else cfg.layer
        w = _probe(_scaled(feats.diff(layer))[0], cfg.C, ctx.seed) / rms[layer]  # on raw differences
        ctx.log(f"linear_probe: layer {layer} (validation accuracy {acc[layer]:.3f})")
        meta = {
            "intervention": self.name,
            "site": "resid",
            "template_name": "LINEAR_PROBE_TEMPLATE",
            "layer": layer,
            "layer_accuracy": [round(float(a), 6) for a in acc],
            "n_train_pairs": len(tr),
            "n_val_pairs": len(va),
        }
        return InterventionState(meta=meta, tensors={"w": torch.tensor(w, dtype=torch.float32)})

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        self.check_config(config)
        check_state(self.name, state, ("w",), ("layer",))
        info = {k: state.meta[k] for k in ("layer", "layer_accuracy")}
        if not pairs:
            return ScoredPairs([], np.zeros(0), info=info)
        feats = PairSite(ctx, pairs, "resid", LINEAR_PROBE_TEMPLATE)
        layer = int(state.meta["layer"])
        w = state.tensors["w"].double().numpy()
        if layer >= feats.n_layers or w.shape[0] != feats.dim:
            raise StoreError("the linear_probe state does not match these activations' shapes")
        pos, neg = feats.layers(layer, layer + 1)
        s = (pos[:, 0].astype(np.float64) - neg[:, 0]) @ w
        return ScoredPairs([p.id for p in pairs], sigmoid(s), info=info)
