"""``zero_shot``: the base model scores each response by its log-probability given the prompt.

Nothing is trained (upstream-reference §4.1): ``fit`` records which train split it was "fitted" on so a
stored state says where it came from, and its requirements say the scores never depend on that split
(``train_data=False``), so "trained on S, evaluated on T" and the zero-shot baseline on T are one
evaluation. Scoring follows upstream exactly by default (``scoring="upstream"``: summed log-prob of
``response + EOS`` given the prompt, both tokenised without special tokens, with the pair's shared
1/(L−1) temperature); ``"mean"``/``"sum"`` are named variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from genies.api.intervention import InterventionConfig, InterventionState, ScoredPairs
from genies.interventions._scoring_common import (
    LogProbIntervention,
    ScoringConfig,
    group_pairs,
    score_example_prompts,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split


class ZeroShotConfig(ScoringConfig):
    """``scoring`` ("upstream" | "mean" | "sum") and ``batch_size`` (never changes results)."""


@register_intervention("zero_shot")
class ZeroShot(LogProbIntervention):
    """Preference by comparing the base model's log-probabilities of the two responses."""

    Config: ClassVar[type[InterventionConfig]] = ZeroShotConfig
    reads_train: ClassVar[bool] = False

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        """Record the train split's identity; the model is not used."""
        self.check_config(config)
        return InterventionState(meta=self._base_meta(train))

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        self._check_state(state)
        groups = group_pairs(pairs)
        return score_example_prompts(ctx, pairs, groups, [g.prompt for g in groups], cfg)
