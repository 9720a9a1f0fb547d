"""``random``: a correct chance baseline (upstream-reference §4.12, fixed).

Upstream predicted ``[0.5, 0.5]`` with the label on index 1, so its argmax tie went to the wrong
response and it scored accuracy 0.0. Here p(correct) is drawn per pair from a generator seeded by
``(ctx.seed, pair id)`` — independent of batch, order and which other pairs are scored — so accuracy is
0.5 in expectation and each evaluation is reproducible:

* ``mode="uniform"`` (default): p ~ U(0, 1); accuracy ≈ 0.5, a chance classifier that is confidently
  wrong as often as right (its calibration error shows that).
* ``mode="coin"``: p = 0.5 ± ``confidence − 0.5``, sign by a fair coin.
* ``mode="constant"``: p = 0.5 for every pair: every pair a tie, accuracy exactly 0.5, calibrated.

Nothing is trained and no model is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    Requirements,
    ScoredPairs,
    scored_pairs,
)
from genies.errors import StoreError
from genies.hashing import sha256_text
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split


class RandomConfig(InterventionConfig):
    mode: Literal["uniform", "coin", "constant"] = pydantic.Field("uniform", description="How p is drawn.")
    confidence: float = pydantic.Field(0.75, ge=0.5, le=1.0, description="p of the chosen side (mode=coin).")


def _pair_rng(seed: int, pair: Pair) -> np.random.Generator:
    tag = int(sha256_text(f"genies.random\0{pair.id}\0{pair.prompt}")[:16], 16)
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, tag])


@register_intervention("random")
class RandomBaseline(Intervention):
    """p(correct) drawn at random per pair, seeded; accuracy 0.5 in expectation."""

    Config: ClassVar[type[InterventionConfig]] = RandomConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        return Requirements(train_data=False, fit_model=False, score_model=False)

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        self.check_config(config)
        return InterventionState(meta={"intervention": self.name})

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        if state.meta.get("intervention") != self.name:
            raise StoreError(
                f"intervention state was made by {state.meta.get('intervention')!r}, not 'random'"
            )
        p = np.empty(len(pairs))
        for i, pair in enumerate(pairs):
            u = _pair_rng(ctx.seed, pair).random()
            if cfg.mode == "uniform":
                p[i] = u
            elif cfg.mode == "coin":
                p[i] = cfg.confidence if u < 0.5 else 1.0 - cfg.confidence
            else:
                p[i] = 0.5
        return scored_pairs(pairs, p, mode=cfg.mode)
