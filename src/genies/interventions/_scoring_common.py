"""Shared machinery of the log-probability interventions (``zero_shot``, ``few_shot``).

Both score each response by its log-probability given a (possibly prefixed) prompt and turn the two
scores of a pair into p(correct) with ``genies.models.scoring.pair_p_correct``. What they share:

* grouping pairs back into their examples, because upstream's long filter (upstream-reference §1.5)
  drops whole *examples* — all pairs of an example go if any of its responses does not fit;
* one deduplicated ``Scorer`` call per ``score_pairs`` (all pairs of an example share the correct
  response, so scoring it once per example is both faster and exactly equivalent);
* the config fields ``scoring`` and ``batch_size`` (``batch_size`` never changes a number, so it is
  listed in ``cache_exclude`` and must not be part of a cache key).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from genies.api.intervention import Intervention, InterventionConfig, InterventionState, ScoredPairs
from genies.errors import ConfigError, StoreError
from genies.models.scoring import ScoringMethod

if TYPE_CHECKING:
    from genies.data.schema import Pair
    from genies.models.loading import LoadedModel
    from genies.models.scoring import Scorer

_PROGRESS: ContextVar[bool] = ContextVar("genies_scoring_progress", default=False)


@contextlib.contextmanager
def scoring_progress(enabled: bool = True) -> Iterator[None]:
    """Show the scorer's progress bar for ``score_pairs`` calls made inside this block.

    Progress is a display concern, not part of an intervention's config (it must never change a cache
    key), so callers such as ``genies evaluate`` switch it on through this context instead.
    """
    token = _PROGRESS.set(enabled)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


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
    """A 64-bit integer from sha256 of ``text``: stable across processes, unlike ``hash()``."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


@dataclass
class ExampleGroup:
    """The pairs (positions in the input sequence) that come from one example."""

    example_index: int
    prompt: str
    positions: list[int] = field(default_factory=list)


def group_pairs(pairs: Sequence[Pair]) -> list[ExampleGroup]:
    """Group pairs by example, in order of first appearance.

    The key is ``(example_index, prompt)`` rather than the index alone so hand-built pair lists whose
    indices collide still never share a few-shot prefix or a drop decision across different prompts.
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
    trains: ClassVar[bool] = False
    #: Config fields that never change a result and must be left out of cache keys.
    cache_exclude: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def _config(self, config: InterventionConfig | dict[str, Any] | None) -> Any:
        """Accept this intervention's config (or a plain dict, validated); reject other configs."""
        if config is None or isinstance(config, dict):
            return self.make_config(config)
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"intervention {self.name!r} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        return config

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


def _fitting(scorer: Scorer, lm: LoadedModel, requests: list[tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Whether each request is short enough: upstream's rule (``Scorer.fits``: prompt + response + EOS
    tokenised together, default special tokens) *and* the length actually scored (prompt and response
    tokenised separately, which can be a few tokens longer), so a kept example can always be scored."""
    encoded = scorer.encode(requests) if requests else []
    return {
        req: len(ctx) + len(resp) <= lm.max_length and scorer.fits(*req)
        for req, (ctx, resp) in zip(requests, encoded, strict=True)
    }


def score_example_prompts(
    lm: LoadedModel,
    pairs: Sequence[Pair],
    groups: Sequence[ExampleGroup],
    prompts: Sequence[str],
    config: ScoringConfig,
    info: dict[str, Any] | None = None,
) -> ScoredPairs:
    """Score every pair with its example's (possibly rewritten) prompt; drop over-length examples.

    ``prompts[i]`` is the text the model sees as the prompt of ``groups[i]``. An example is dropped
    when any of its responses is too long (upstream's long filter, applied per example, see
    ``_fitting``); kept pairs are returned in input order.
    """
    from genies.models.scoring import Scorer, pair_p_correct

    info = dict(info or {})
    scorer = Scorer(lm, batch_size=config.batch_size, progress=_PROGRESS.get())

    candidates: dict[tuple[str, str], None] = {}
    for group, prompt in zip(groups, prompts, strict=True):
        for pos in group.positions:
            candidates.setdefault((prompt, pairs[pos].correct))
            candidates.setdefault((prompt, pairs[pos].incorrect))
    ok = _fitting(scorer, lm, list(candidates))

    prompt_at: dict[int, str] = {}
    dropped_examples = dropped_pairs = 0
    for group, prompt in zip(groups, prompts, strict=True):
        texts = (t for pos in group.positions for t in (pairs[pos].correct, pairs[pos].incorrect))
        if all(ok[(prompt, text)] for text in texts):
            for pos in group.positions:
                prompt_at[pos] = prompt
        else:
            dropped_examples += 1
            dropped_pairs += len(group.positions)

    kept = sorted(prompt_at)
    request_index: dict[tuple[str, str], int] = {}
    for p in kept:
        for text in (pairs[p].correct, pairs[p].incorrect):
            request_index.setdefault((prompt_at[p], text), len(request_index))
    scores = scorer.score(list(request_index)) if request_index else []
    correct = [scores[request_index[(prompt_at[p], pairs[p].correct)]] for p in kept]
    incorrect = [scores[request_index[(prompt_at[p], pairs[p].incorrect)]] for p in kept]
    p_correct = pair_p_correct(correct, incorrect, method=config.scoring) if kept else []

    info.update(
        {
            "scoring": config.scoring,
            "dropped_examples": dropped_examples,
            "requests": len(request_index),
            "forward_passes": int(getattr(scorer, "forward_passes", 0)),
        }
    )
    return ScoredPairs([pairs[p].id for p in kept], p_correct, dropped=dropped_pairs, info=info)
