"""Do scores and activations stay put however the engine batches them? (``genies models check``)

Peers' users keep finding that scores move with batch size (reward-bench #137, lm-eval #704/#1751).
:func:`check_invariance` scores requests at batch sizes 1, 8 and automatic, with the tokenizer
padding on either side, in a shuffled order, with the KV-cache strategy and through the unbatched
reference path, extracts activations batched and one text at a time, and returns the largest
deviation of each from the reference and from the automatic batch. A deviation beyond float
rounding means a bug, or a model whose forward the engine does not reproduce.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from genies.models.loading import LoadedModel


@dataclass(frozen=True)
class CheckRow:
    label: str
    vs_reference: float  # nats for scores; relative to the largest |activation| for activations
    vs_automatic: float


@dataclass(frozen=True)
class CheckResult:
    rows: list[CheckRow]
    self_checks: dict[str, bool]
    automatic_s: float
    reference_s: float

    def failed(self, tol: float) -> bool:
        return any(r.vs_reference > tol or r.vs_automatic > tol for r in self.rows)


def _dev(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def check_invariance(
    lm: LoadedModel, requests: Sequence[tuple[str, str]], *, seed: int = 0, n_texts: int = 16
) -> CheckResult:
    """Run every variant on ``requests`` (and activations on the first ``n_texts`` distinct ones)."""
    from genies.models.engine import ForwardEngine
    from genies.models.scoring import score_reference

    def scores(reqs, **kw) -> np.ndarray:
        return np.array([s.logprob_sum for s in ForwardEngine(lm).score(reqs, **kw)])

    engine = ForwardEngine(lm)
    t0 = time.perf_counter()
    auto = np.array([s.logprob_sum for s in engine.score(requests)])
    auto_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = np.array([s.logprob_sum for s in score_reference(lm, requests)])
    ref_s = time.perf_counter() - t0
    rows = [CheckRow("score: automatic batch", _dev(auto, ref), 0.0)]
    for bs in (1, 8):
        got = scores(requests, batch_size=bs)
        rows.append(CheckRow(f"score: batch size {bs}", _dev(got, ref), _dev(got, auto)))
    tok = lm.tokenizer
    old = tok.padding_side
    for side in ("left", "right"):
        tok.padding_side = side
        try:
            got = scores(requests, batch_size=8)
        finally:
            tok.padding_side = old
        rows.append(CheckRow(f"score: {side} padding, batch 8", _dev(got, ref), _dev(got, auto)))
    perm = list(range(len(requests)))
    random.Random(seed).shuffle(perm)
    shuffled = scores([requests[i] for i in perm])
    back = np.empty_like(shuffled)
    back[perm] = shuffled
    rows.append(CheckRow(f"score: shuffled order (seed {seed})", _dev(back, ref), _dev(back, auto)))
    cache = scores(requests, strategy="cache")
    rows.append(CheckRow("score: KV-cache strategy", _dev(cache, ref), _dev(cache, auto)))
    rows.append(CheckRow("score: reference path (unbatched)", 0.0, _dev(ref, auto)))

    texts = list(dict.fromkeys(tuple(r) for r in requests))[:n_texts]
    sites = ("resid", "heads", "final")
    acts = ForwardEngine(lm).extract(texts, sites)
    one = ForwardEngine(lm).extract(texts, sites, batch_size=1)
    oracle = ForwardEngine(lm).extract(texts, sites, path="reference")
    for site in sites:
        scale = max(float(oracle[site].abs().max()), 1e-12)
        rows.append(CheckRow(f"extract {site}: automatic batch", _dev(acts[site], oracle[site]) / scale, 0.0))
        rows.append(
            CheckRow(
                f"extract {site}: batch size 1",
                _dev(one[site], oracle[site]) / scale,
                _dev(one[site], acts[site]) / scale,
            )
        )
    return CheckResult(rows, dict(engine.self_checks), auto_s, ref_s)
