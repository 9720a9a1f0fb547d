"""``lat_pca``: Representation Engineering's LAT (Zou et al. 2023), which upstream's "LAT" is not.

Per residual-stream layer: the paired differences ``d = resid(correct) − resid(incorrect)`` of the
training pairs, each multiplied by a seeded random sign (RepE shuffles the order within each pair),
mean-centred; their first principal component ``v`` (unit norm) is the reading vector. Its sign is
fixed on the training labels (``mean(d·v) > 0``). The layer whose vector orders the validation
pairs best is kept (seeded 70/30 split, ties to the lower layer); a pair scores
``s = d·v / σ`` (σ: the training projections' RMS) and ``p(correct) = sigmoid(a·s)`` with ``a`` a
no-intercept logistic fit on the training pairs (so swapping the responses gives ``1 − p``).
Not in the paper; its number is not a reproduction of anything.
"""

from __future__ import annotations

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
    pair_scale,
    sigmoid,
    split_pairs,
    train_pairs,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

#: The stimulus: the raw ``prompt + response``.
LAT_PCA_TEMPLATE = RAW_TEMPLATE


class LatPCAConfig(InterventionConfig):
    """``layer`` (None: chosen on validation pairs), ``val_ratio`` (0.3)."""

    layer: int | None = pydantic.Field(None, ge=0, description="Residual layer; None = best on validation.")
    val_ratio: float = pydantic.Field(0.3, gt=0.0, lt=1.0)


def first_component(d: np.ndarray, seed: int) -> np.ndarray:
    """Unit first principal component of the sign-randomised, centred differences ``d`` [n, D]."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=len(d))
    m = d * signs[:, None]
    m = m - m.mean(0)
    _, _, vt = np.linalg.svd(m, full_matrices=False)
    v = vt[0]
    return v / (np.linalg.norm(v) or 1.0)


@register_intervention("lat_pca")
class LatPCA(Intervention):
    """First principal component of paired differences, per layer; the best layer kept."""

    Config: ClassVar[type[InterventionConfig]] = LatPCAConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        return activation_requirements(("resid",), (LAT_PCA_TEMPLATE,))

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        import torch

        cfg = self.check_config(config)
        pairs = train_pairs(train, ctx.seed)
        feats = PairSite(ctx, pairs, "resid", LAT_PCA_TEMPLATE)  # read one layer at a time
        n_layers = feats.n_layers
        if cfg.layer is not None and cfg.layer >= n_layers:
            raise ConfigError(f"layer={cfg.layer} is not a layer of the model (it has {n_layers})")
        tr, va = split_pairs(feats.n_pairs, cfg.val_ratio, ctx.seed)
        vectors, acc = np.zeros((n_layers, feats.dim)), np.zeros(n_layers)
        for layer in range(n_layers):
            d = feats.diff(layer)  # [n, D] float64
            v = first_component(d[tr], ctx.seed + layer)
            if np.mean(d[tr] @ v) < 0:
                v = -v
            vectors[layer] = v
            proj = d[va] @ v
            acc[layer] = float(np.mean((proj > 0) + 0.5 * (proj == 0)))
        layer = int(np.argsort(-acc, kind="stable")[0]) if cfg.layer is None else cfg.layer
        proj = feats.diff(layer)[tr] @ vectors[layer]
        sigma = float(np.sqrt(np.mean(proj**2))) or 1.0
        scale = pair_scale(proj / sigma)
        ctx.log(f"lat_pca: layer {layer} (validation accuracy {acc[layer]:.3f})")
        meta = {
            "intervention": self.name,
            "site": "resid",
            "template_name": "LAT_PCA_TEMPLATE",
            "layer": layer,
            "layer_accuracy": [round(float(a), 6) for a in acc],
            "sigma": sigma,
            "scale": scale,
            "n_train_pairs": len(tr),
            "n_val_pairs": len(va),
        }
        return InterventionState(
            meta=meta,
            tensors={
                "vector": torch.tensor(vectors[layer], dtype=torch.float32),
                "layer_vectors": torch.tensor(vectors, dtype=torch.float32),
            },
        )

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        self.check_config(config)
        check_state(self.name, state, ("vector",), ("layer", "sigma", "scale"))
        info = {k: state.meta[k] for k in ("layer", "layer_accuracy")}
        if not pairs:
            return ScoredPairs([], np.zeros(0), info=info)
        feats = PairSite(ctx, pairs, "resid", LAT_PCA_TEMPLATE)
        layer = int(state.meta["layer"])
        v = state.tensors["vector"].double().numpy()
        if layer >= feats.n_layers or v.shape[0] != feats.dim:
            raise StoreError("the lat_pca state does not match these activations' shapes")
        pos, neg = feats.layers(layer, layer + 1)
        s = (pos[:, 0].astype(np.float64) - neg[:, 0]) @ v / state.meta["sigma"]
        return ScoredPairs([p.id for p in pairs], sigmoid(state.meta["scale"] * s), info=info)
