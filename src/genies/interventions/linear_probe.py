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
    activation_requirements,
    check_state,
    pair_features,
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
        pos, neg = pair_features(ctx, pairs, "resid", LINEAR_PROBE_TEMPLATE)
        d = (pos - neg).astype(np.float64)  # [n, L, D]
        n_layers = d.shape[1]
        if cfg.layer is not None and cfg.layer >= n_layers:
            raise ConfigError(f"layer={cfg.layer} is not a layer of the model (it has {n_layers})")
        rms = np.sqrt(np.mean(d**2, axis=0))  # [L, D]
        rms[rms == 0] = 1.0
        d = d / rms[None]
        tr, va = split_pairs(len(d), cfg.val_ratio, ctx.seed)
        acc = np.zeros(n_layers)
        with ctx.progress(n_layers, "probing layers") as advance:
            for layer in range(n_layers):
                s = d[va, layer] @ _probe(d[tr, layer], cfg.C, ctx.seed)
                acc[layer] = float(np.mean((s > 0) + 0.5 * (s == 0)))
                advance(1)
        layer = int(np.argsort(-acc, kind="stable")[0]) if cfg.layer is None else cfg.layer
        w = _probe(d[:, layer], cfg.C, ctx.seed) / rms[layer]  # on raw differences
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
        pos, neg = pair_features(ctx, pairs, "resid", LINEAR_PROBE_TEMPLATE)
        layer = int(state.meta["layer"])
        w = state.tensors["w"].double().numpy()
        if layer >= pos.shape[1] or w.shape[0] != pos.shape[2]:
            raise StoreError("the linear_probe state does not match these activations' shapes")
        s = (pos[:, layer].astype(np.float64) - neg[:, layer]) @ w
        return ScoredPairs([p.id for p in pairs], sigmoid(s), info=info)
