"""``zero_shot``: the base model scores each response by its log-probability given the prompt.

Nothing is trained (upstream-reference §4.1): ``fit`` records which train split it was "fitted" on so a
stored state says where it came from. Scoring follows upstream exactly by default (``scoring=
"upstream"``: summed log-prob of ``response + EOS`` given the prompt, both tokenised without special
tokens, with the pair's shared 1/(L−1) temperature); ``"mean"``/``"sum"`` are named variants.
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
    from genies.data.schema import Pair, Split
    from genies.models.loading import LoadedModel


class ZeroShotConfig(ScoringConfig):
    """``scoring`` ("upstream" | "mean" | "sum") and ``batch_size`` (never changes results)."""


@register_intervention("zero_shot")
class ZeroShot(LogProbIntervention):
    """Preference by comparing the base model's log-probabilities of the two responses."""

    Config: ClassVar[type[InterventionConfig]] = ZeroShotConfig
    #: The base model's scores ignore the training split: "trained on S, evaluated on T" is the baseline on T.
    uses_train_data: ClassVar[bool] = False

    def fit(
        self, model: LoadedModel | None, train: Split, config: InterventionConfig, *, seed: int
    ) -> InterventionState:
        """Record the train split's identity; ``model`` is not used (may be None)."""
        self._config(config)
        return InterventionState(meta=self._base_meta(train))

    def score_pairs(
        self,
        model: LoadedModel,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
        *,
        seed: int,
    ) -> ScoredPairs:
        cfg = self._config(config)
        self._check_state(state)
        groups = group_pairs(pairs)
        return score_example_prompts(model, pairs, groups, [g.prompt for g in groups], cfg)
