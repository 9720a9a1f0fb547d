"""``few_shot``: zero-shot scoring with demonstrations from the source train split prepended.

Follows upstream-reference §4.2: for every evaluated *example*, ``num_shots`` distinct demonstrations
(prompt + its best response only, never a comparison) are sampled from the source train split and the
prompt becomes ``Σ_shots ("\\n\\n" + shot.prompt + shot.best) + "\\n\\n" + prompt``; all pairs of the
example share that prompt. Sane fixes (§5.15): the sample is seeded from the run seed and a sha256 of
the evaluated prompt (never a global RNG, and independent of which other examples are evaluated), and
demonstrations whose prompt equals the evaluated prompt are excluded by default, because some train
splits contain copies of test examples. Over-length examples are dropped and counted, as upstream does.

``fit`` stores the demonstration pool (the train split's ``[prompt, best response]`` list) in the
state's JSON, so a saved state is self-contained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pydantic

from genies.api.intervention import InterventionConfig, InterventionState, ScoredPairs
from genies.errors import StoreError
from genies.interventions._scoring_common import (
    LogProbIntervention,
    ScoringConfig,
    group_pairs,
    score_example_prompts,
    stable_hash,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.data.schema import Pair, Split
    from genies.models.loading import LoadedModel

DELIMITER = "\n\n"
_STREAM_TAG = stable_hash("genies.few_shot.shots")  # keeps this RNG stream apart from other per-prompt ones

Shot = tuple[str, str]  # (prompt, best response)


class FewShotConfig(ScoringConfig):
    """Scoring options plus the demonstration settings."""

    num_shots: int = pydantic.Field(4, ge=0, description="Demonstrations per evaluated example.")
    exclude_same_prompt: bool = pydantic.Field(
        True, description="Never show a demonstration whose prompt equals the evaluated prompt."
    )


def build_prompt(shots: Sequence[Shot], prompt: str) -> str:
    """Upstream's few-shot prompt: ``Σ ("\\n\\n" + shot prompt + shot best) + "\\n\\n" + prompt``."""
    prefix = "".join(DELIMITER + shot_prompt + shot_best for shot_prompt, shot_best in shots)
    return prefix + DELIMITER + prompt


def shot_rng(seed: int, prompt: str) -> np.random.Generator:
    """The generator for one evaluated prompt: depends only on (seed, prompt), never on global state."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, _STREAM_TAG, stable_hash(prompt)])


def sample_shots(
    pool: Sequence[Shot], prompt: str, num_shots: int, seed: int, *, exclude_same_prompt: bool = True
) -> list[Shot]:
    """Sample up to ``num_shots`` distinct pool entries (by position) for the evaluated ``prompt``.

    If fewer entries are eligible than requested, all eligible entries are used (in sampled order).
    """
    eligible = [i for i, (p, _) in enumerate(pool) if not (exclude_same_prompt and p == prompt)]
    k = min(num_shots, len(eligible))
    if k == 0:
        return []
    picks = shot_rng(seed, prompt).choice(len(eligible), size=k, replace=False)
    return [tuple(pool[eligible[int(j)]]) for j in picks]  # type: ignore[misc]


def _pool_from_state(state: InterventionState) -> list[Shot]:
    pool = state.meta.get("pool")
    if not isinstance(pool, list) or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(s, str) for s in e) for e in pool
    ):
        raise StoreError("few_shot state has no valid demonstration pool ([prompt, best response] list)")
    return [(p, b) for p, b in pool]


@register_intervention("few_shot")
class FewShot(LogProbIntervention):
    """In-context demonstrations from the source train split, then zero-shot scoring."""

    Config: ClassVar[type[InterventionConfig]] = FewShotConfig

    def fit(
        self, model: LoadedModel | None, train: Split, config: InterventionConfig, *, seed: int
    ) -> InterventionState:
        """Store the demonstration pool; ``model`` is not used (may be None)."""
        self._config(config)
        meta: dict[str, Any] = self._base_meta(train)
        meta["pool"] = [[ex.prompt, ex.best] for ex in train.examples]
        return InterventionState(meta=meta)

    def score_pairs(
        self,
        model: LoadedModel,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
        *,
        seed: int,
    ) -> ScoredPairs:
        cfg: FewShotConfig = self._config(config)
        self._check_state(state)
        pool = _pool_from_state(state)
        groups = group_pairs(pairs)
        prompts: list[str] = []
        short = excluded = 0
        for g in groups:
            shots = sample_shots(
                pool, g.prompt, cfg.num_shots, seed, exclude_same_prompt=cfg.exclude_same_prompt
            )
            short += len(shots) < cfg.num_shots
            if cfg.exclude_same_prompt:
                excluded += any(p == g.prompt for p, _ in pool)
            prompts.append(build_prompt(shots, g.prompt))
        info = {
            "num_shots": cfg.num_shots,
            "pool_size": len(pool),
            "examples_with_fewer_shots": short,
            "examples_with_same_prompt_in_pool": excluded,
        }
        return score_example_prompts(model, pairs, groups, prompts, cfg, info)
