"""Shared machinery of the log-probability interventions (``zero_shot``, ``few_shot``).

Both score each response by its log-probability given a (possibly prefixed) prompt through
``ctx.scores`` and turn the two scores of a pair into p(correct) with
``genies.models.scoring.pair_p_correct``. What they share:

* their ``Requirements``: nothing is trained and the model is not needed to fit; ``batch_size`` never
  changes a number (result-neutral); evaluated examples must fit the ``scoring`` length rule, which
  the pipeline applies at the data level (upstream-reference §1.5), so ``score_pairs`` scores every
  pair it is given;
* grouping pairs back into their examples (all pairs of an example share a prompt);
* one deduplicated ``ctx.scores`` call per ``score_pairs`` (all pairs of an example share the correct
  response, so scoring it once per example is both faster and exactly equivalent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    LengthRule,
    Requirements,
    ScoredPairs,
)
from genies.errors import StoreError
from genies.hashing import sha256_text
from genies.models.scoring import ScoringMethod

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair

SCORING_RULE = LengthRule("scoring")


class ScoringConfig(InterventionConfig):
    """Config fields shared by the log-probability interventions."""

    scoring: ScoringMethod = pydantic.Field(
        "upstream",
        description="How two response scores become p(correct): 'upstream' (summed log-prob of "
        "response+EOS with upstream's shared 1/(L-1) temperature), 'mean' (per-token mean) or 'sum'.",
    )
    batch_size: int | None = pydantic.Field(
        None,
        ge=1,
        description="Scorer batch size (None = automatic). Never changes results; not part of cache keys.",
    )


def stable_hash(text: str) -> int:
    """A 64-bit integer from sha256 of ``text`` (its first 8 bytes, big-endian): stable across
    processes, unlike ``hash()``."""
    return int(sha256_text(text)[:16], 16)


@dataclass
class ExampleGroup:
    """The pairs (positions in the input sequence) that come from one example."""

    example_index: int
    prompt: str
    positions: list[int] = field(default_factory=list)


def group_pairs(pairs: Sequence[Pair]) -> list[ExampleGroup]:
    """Group pairs by example, in order of first appearance.

    The key is ``(example_index, prompt)`` rather than the index alone so hand-built pair lists whose
    indices collide still never share a few-shot prefix across different prompts.
    """
    groups: dict[tuple[int, str], ExampleGroup] = {}
    for pos, pair in enumerate(pairs):
        key = (pair.example_index, pair.prompt)
        if key not in groups:
            groups[key] = ExampleGroup(pair.example_index, pair.prompt)
        groups[key].positions.append(pos)
    return list(groups.values())


class LogProbIntervention(Intervention):
    """Base of zero_shot / few_shot: nothing is trained, ``fit`` only records what was used."""

    Config: ClassVar[type[InterventionConfig]] = ScoringConfig
    #: Whether the state (hence the scores) depends on the training split.
    reads_train: ClassVar[bool] = True

    def requirements(self, config: InterventionConfig) -> Requirements:
        return Requirements(
            train_data=self.reads_train,
            fit_model=False,
            result_neutral=frozenset({"batch_size"}),
            lengths=(SCORING_RULE,),
        )

    def _check_state(self, state: InterventionState) -> None:
        made_by = state.meta.get("intervention")
        if made_by != self.name:
            raise StoreError(f"intervention state was made by {made_by!r}, not {self.name!r}")

    def _base_meta(self, train: Any) -> dict[str, Any]:
        return {
            "intervention": self.name,
            "train_distribution": getattr(train, "distribution_id", "") or None,
            "train_fingerprint": train.fingerprint,
        }


def score_example_prompts(
    ctx: InterventionContext,
    pairs: Sequence[Pair],
    groups: Sequence[ExampleGroup],
    prompts: Sequence[str],
    config: ScoringConfig,
    info: dict[str, Any] | None = None,
) -> ScoredPairs:
    """Score every pair with its example's (possibly rewritten) prompt, in input order.

    ``prompts[i]`` is the text the model sees as the prompt of ``groups[i]``; each distinct
    ``(prompt, response)`` is scored once.
    """
    from genies.models.scoring import pair_p_correct

    prompt_at: dict[int, str] = {}
    for group, prompt in zip(groups, prompts, strict=True):
        for pos in group.positions:
            prompt_at[pos] = prompt
    request_index: dict[tuple[str, str], int] = {}
    for pos, pair in enumerate(pairs):
        for text in (pair.correct, pair.incorrect):
            request_index.setdefault((prompt_at[pos], text), len(request_index))
    scores = ctx.scores(list(request_index), batch_size=config.batch_size)
    correct = [scores[request_index[(prompt_at[i], p.correct)]] for i, p in enumerate(pairs)]
    incorrect = [scores[request_index[(prompt_at[i], p.incorrect)]] for i, p in enumerate(pairs)]
    p_correct = pair_p_correct(correct, incorrect, method=config.scoring)
    out = {**(info or {}), "scoring": config.scoring, "requests": len(request_index)}
    return ScoredPairs([p.id for p in pairs], p_correct, info=out)
