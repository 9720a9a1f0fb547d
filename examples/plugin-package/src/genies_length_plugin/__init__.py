"""``length_preference``: an example genies plug-in (registered by the ``genies.interventions`` entry point).

Fits ``p(correct) = σ(w · Δ)`` with ``Δ = (len(correct) − len(incorrect)) / scale`` on the training
pairs by a few Newton steps (one feature, no bias: swapping the responses flips the sign, so the
model is order-symmetric), and scores pairs with it. Seeded through ``ctx.seed`` (pairing only).
"""

from __future__ import annotations

import math

import numpy as np
import pydantic
import torch

from genies.api import Intervention, InterventionConfig, InterventionState, Requirements, ScoredPairs
from genies.errors import StoreError


class LengthPreferenceConfig(InterventionConfig):
    scale: float = pydantic.Field(100.0, gt=0, description="Characters per unit of the length feature.")
    newton_steps: int = pydantic.Field(20, ge=1)
    fail: bool = pydantic.Field(False, description="Raise in fit (to test error reporting).")


def _delta(pairs, scale: float) -> np.ndarray:
    return np.array([(len(p.correct) - len(p.incorrect)) / scale for p in pairs], dtype=np.float64)


class LengthPreference(Intervention):
    """Prefers the longer (w > 0) or shorter (w < 0) response, as learnt from the training split."""

    Config = LengthPreferenceConfig

    def requirements(self, config):
        return Requirements(train_data=True, fit_model=False, score_model=False)

    def fit(self, ctx, train, config):
        cfg = self.check_config(config)
        if cfg.fail:
            raise RuntimeError("length_preference was asked to fail")
        x = _delta(train.to_pairs("one_per_example", seed=ctx.seed), cfg.scale)
        w = 0.0
        for _ in range(cfg.newton_steps):  # maximise Σ log σ(w x): every pair's label is "correct"
            s = 1.0 / (1.0 + np.exp(-w * x))
            grad, hess = float(np.sum((1 - s) * x)), float(np.sum(s * (1 - s) * x * x)) + 1e-6
            w += grad / hess
            w = max(-50.0, min(50.0, w))
        ctx.log(f"length_preference: w = {w:.3f} on {len(x)} pairs")
        return InterventionState(meta={"intervention": self.name}, tensors={"w": torch.tensor([w])})

    def score_pairs(self, ctx, state, pairs, config):
        cfg = self.check_config(config)
        if state.meta.get("intervention") != self.name or "w" not in state.tensors:
            raise StoreError("not a length_preference state")
        w = float(state.tensors["w"][0])
        z = w * _delta(pairs, cfg.scale)
        p = np.array([1.0 / (1.0 + math.exp(-v)) for v in z])
        return ScoredPairs([p.id for p in pairs], p, info={"w": w})
