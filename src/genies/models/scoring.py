"""Scoring: the log-probability of a response given a prompt, and pair probabilities from it.

What is scored (upstream §4.1, exactly): the summed log-probability of ``tok(response + eos)`` given
``tok(prompt)``, both tokenised separately with ``add_special_tokens=False`` (no BOS; the literal
eos string maps to the eos id). An empty prompt would leave the first response token without any
context (upstream then reads a padding position); we use the BOS token (else EOS) as a one-token
context instead, and report ``prompt_tokens=1``.

The work is done by the forward engine (``genies.models.engine``): token trees under a shared trunk,
one flat row per batch with tree attention, the vocabulary head only where a token is scored, sums
in token order in float64, a self-check against the model's own forward. :class:`Scorer` is that
engine configured once with the round-1 options (batch size, progress bar, reference path,
strategy), so ``Scorer(lm).score(requests)`` keeps working; code that holds an engine calls
``engine.score`` directly.

``Scorer(lm, reference=True)`` (or :func:`score_reference`) is the naive oracle used by tests and the
benchmark: one unbatched forward per request with full-vocabulary logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from genies.errors import ConfigError
from genies.models.engine import ForwardEngine, Progress, Strategy
from genies.models.reductions import ResponseScore

if TYPE_CHECKING:
    from genies.models.loading import LoadedModel

__all__ = ["SCORING_METHODS", "ResponseScore", "Scorer", "ScoringMethod", "pair_p_correct", "score_reference"]

ScoringMethod = Literal["upstream", "mean", "sum"]
SCORING_METHODS: tuple[str, ...] = ("upstream", "mean", "sum")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def pair_p_correct(
    correct: Sequence[ResponseScore], incorrect: Sequence[ResponseScore], method: ScoringMethod = "upstream"
) -> np.ndarray:
    """P(correct preferred) per pair.

    * ``upstream``: softmax of the two summed scores divided by the shared denominator L−1, where L
      is the padded pair length (prompt + longer response): ``σ((S_c − S_w)/(L−1))``.
    * ``mean``: per-token mean log-probs, ``σ(S_c/n_c − S_w/n_w)``.
    * ``sum``: summed log-probs without the temperature, ``σ(S_c − S_w)``.
    """
    if len(correct) != len(incorrect):
        raise ValueError(f"{len(correct)} correct vs {len(incorrect)} incorrect scores")
    if method not in SCORING_METHODS:
        raise ConfigError(f"unknown scoring method {method!r}; choose from {', '.join(SCORING_METHODS)}")
    if not correct:
        return np.zeros(0, dtype=np.float64)
    sc = np.array([s.logprob_sum for s in correct], dtype=np.float64)
    sw = np.array([s.logprob_sum for s in incorrect], dtype=np.float64)
    if method == "sum":
        return _sigmoid(sc - sw)
    if method == "mean":
        nc = np.array([s.n_tokens for s in correct], dtype=np.float64)
        nw = np.array([s.n_tokens for s in incorrect], dtype=np.float64)
        return _sigmoid(sc / nc - sw / nw)
    length = np.array(
        [
            max(c.prompt_tokens + c.n_tokens, w.prompt_tokens + w.n_tokens)
            for c, w in zip(correct, incorrect, strict=True)
        ],
        dtype=np.float64,
    )
    return _sigmoid((sc - sw) / np.maximum(length - 1.0, 1.0))


class Scorer(ForwardEngine):
    """Scores ``(prompt, response)`` requests with a loaded causal LM (see the module docstring).

    ``batch_size`` = requests per forward pass (None: from the memory budget); ``progress`` shows a
    progress bar; ``reference`` forces the naive oracle; ``strategy`` picks the fast path (``auto``:
    ``cache`` for configs with a sliding window, else ``tree``). If the fast path fails its
    self-check, ``reference`` becomes True.
    """

    def __init__(
        self,
        lm: LoadedModel,
        *,
        batch_size: int | None = None,
        progress: bool = False,
        reference: bool = False,
        memory_budget_mb: int | None = None,
        strategy: Strategy = "auto",
    ) -> None:
        super().__init__(lm, memory_budget_mb=memory_budget_mb)
        if strategy not in ("auto", "cache", "tree"):
            raise ConfigError(f"unknown scoring strategy {strategy!r}; use 'auto', 'cache' or 'tree'")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 (got {batch_size})")
        if strategy == "auto":
            strategy = "cache" if _window(lm) else "tree"
        self.batch_size = batch_size
        self.progress = progress
        self.reference = reference
        self.strategy = strategy
        self.eos = lm.tokenizer.eos_token

    @property
    def forward_passes(self) -> int:
        return self.counters["forward_passes"]

    @property
    def stats(self) -> dict[str, int]:
        """Tokens run (``real_tokens``), incl. padding (``padded_tokens``), projected to the vocabulary."""
        return {k: self.counters[k] for k in ("real_tokens", "padded_tokens", "scored_tokens")}

    def score(
        self,
        requests: Sequence[tuple[str, str]],
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
        strategy: Strategy | None = None,
        overlength: Literal["error", "drop"] = "error",
    ) -> list[ResponseScore]:
        """Score each ``(prompt, response)``; the result is in request order."""
        strategy = strategy or self.strategy
        bs = batch_size if batch_size is not None else self.batch_size
        with _progress_bar(self.progress and progress is None, len(requests)) as bar:
            out = self._score(requests, bs, progress or bar, strategy, overlength, reference=self.reference)
        if self.last_path == "reference":
            self.reference = True  # the fast path failed its self-check: the oracle was used
        return out


def _window(lm: LoadedModel) -> int | None:
    cfg = lm.model.config
    return getattr(getattr(cfg, "text_config", None) or cfg, "sliding_window", None)


@contextlib.contextmanager
def _progress_bar(on: bool, total: int) -> Iterator[Progress | None]:
    """A rich progress bar advanced per request (None when off)."""
    if not on:
        yield None
        return
    from rich.progress import Progress as RichProgress

    with RichProgress(transient=True) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda n: bar.advance(task, n)


def score_reference(lm: LoadedModel, requests: Sequence[tuple[str, str]]) -> list[ResponseScore]:
    """The naive oracle: one unbatched full-logit forward per request."""
    return Scorer(lm, reference=True).score(requests)
