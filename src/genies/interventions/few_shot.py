"""``few_shot``: zero-shot scoring with demonstrations from the source train split prepended.

Follows upstream-reference §4.2: for every evaluated *example*, ``num_shots`` distinct demonstrations
(prompt + its best response only, never a comparison) are sampled from the source train split and the
prompt becomes ``Σ_shots ("\\n\\n" + shot.prompt + shot.best) + "\\n\\n" + prompt``; all pairs of the
example share that prompt. Sane fixes (§5.15): the sample is seeded from the run seed and a sha256 of
the evaluated prompt (never a global RNG, and independent of which other examples are evaluated), and
demonstrations whose prompt equals the evaluated prompt are excluded by default, because some train
splits contain copies of test examples.

Over-length examples: the pipeline drops, at the data level, the examples that do not fit the model
*without* demonstrations (the same ``scoring`` rule as zero_shot), so a few-shot evaluation scores
exactly the pairs the zero-shot baseline of its row scores. Upstream instead dropped every example whose
prefixed text was too long (its stored 241/250-example few-shot results), which made a row compare
different pairs. Here an example whose sampled demonstrations do not all fit keeps as many of them as
fit, in sampled order (counted in ``info["examples_with_shots_cut"]``); one that does not fit even the
bare ``"\\n\\n"`` delimiter (a few tokens below the limit) is scored with its plain prompt.

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
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

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


def fit_shots(
    tokenizer: Any, max_length: int, prompt: str, responses: Sequence[str], shots: list[Shot]
) -> tuple[str, int]:
    """The few-shot prompt with as many of ``shots`` (in order) as let every response fit the model;
    returns (prompt, shots used). Without room even for the delimiter, the plain prompt."""
    from genies.lengths import scoring_lengths

    for k in range(len(shots), -1, -1):
        text = build_prompt(shots[:k], prompt)
        if max(scoring_lengths(tokenizer, [(text, r) for r in responses])) <= max_length:
            return text, k
    return prompt, 0


@register_intervention("few_shot")
class FewShot(LogProbIntervention):
    """In-context demonstrations from the source train split, then zero-shot scoring."""

    Config: ClassVar[type[InterventionConfig]] = FewShotConfig

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        """Store the demonstration pool; the model is not used."""
        self.check_config(config)
        meta: dict[str, Any] = self._base_meta(train)
        meta["pool"] = [[ex.prompt, ex.best] for ex in train.examples]
        return InterventionState(meta=meta)

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        from genies.lengths import scoring_lengths

        cfg: FewShotConfig = self.check_config(config)
        self._check_state(state)
        pool = _pool_from_state(state)
        groups = group_pairs(pairs)
        sampled = [
            sample_shots(pool, g.prompt, cfg.num_shots, ctx.seed, exclude_same_prompt=cfg.exclude_same_prompt)
            for g in groups
        ]
        responses = [
            list(dict.fromkeys(t for pos in g.positions for t in (pairs[pos].correct, pairs[pos].incorrect)))
            for g in groups
        ]
        prompts = [build_prompt(shots, g.prompt) for g, shots in zip(groups, sampled, strict=True)]
        cut = cut_shots = 0
        if groups:
            lm = ctx.model
            # one batched length check for the usual case; only examples that overflow are re-fitted
            requests = [(p, r) for p, rs in zip(prompts, responses, strict=True) for r in rs]
            counts = iter(scoring_lengths(lm.tokenizer, requests))
            for i, rs in enumerate(responses):
                if max(next(counts) for _ in rs) > lm.max_length:
                    prompts[i], used = fit_shots(
                        lm.tokenizer, lm.max_length, groups[i].prompt, rs, sampled[i]
                    )
                    cut += 1
                    cut_shots += len(sampled[i]) - used
        short = sum(len(s) < cfg.num_shots for s in sampled)
        excluded = sum(cfg.exclude_same_prompt and any(p == g.prompt for p, _ in pool) for g in groups)
        info = {
            "num_shots": cfg.num_shots,
            "pool_size": len(pool),
            "examples_with_fewer_shots": short,
            "examples_with_same_prompt_in_pool": excluded,
            "examples_with_shots_cut": cut,
            "shots_cut": cut_shots,
        }
        return score_example_prompts(ctx, pairs, groups, prompts, cfg, info)
