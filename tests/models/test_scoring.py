"""Scoring engine on the tiny random model: exactness against the unbatched oracle and invariances."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from genies.errors import ConfigError, ModelError
from genies.models.loading import load_model
from genies.models.scoring import ResponseScore, Scorer, pair_p_correct, score_reference

TOL = 1e-5

PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n",
    "### Instruction:\nWrite a function.\n### Response:\n",
    "The quick brown fox",
    "History, mathematics, cooking, code and Spanish: ",
]
RESPONSES = [
    "Paris is the capital of France.",
    "Paris is the capital of Spain, obviously.",  # shares a long prefix with the one above
    "Paris",  # a prefix of both above
    "def add(a, b):\n    return a + b\n",
    "def add(a, b):\n    return a - b\n",
    "",
    "hola, ¿qué tal?",
    "The quick brown fox jumps over the lazy dog. 0123456789",
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def requests_():
    rng = random.Random(0)
    reqs = [(p, r) for p in PROMPTS for r in RESPONSES]
    reqs += [("", "Hello world"), ("", "")]  # empty prompts
    reqs += [(PROMPTS[0], RESPONSES[0])] * 2  # exact duplicates
    rng.shuffle(reqs)
    return reqs


@pytest.fixture(scope="module")
def reference(lm, requests_):
    return score_reference(lm, requests_)


def _close(a: list[ResponseScore], b: list[ResponseScore], tol: float = TOL) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.n_tokens, x.prompt_tokens) == (y.n_tokens, y.prompt_tokens)
        assert abs(x.logprob_sum - y.logprob_sum) <= tol, (x, y)


def test_scores_are_real_and_distinct(reference):
    values = [s.logprob_sum for s in reference]
    assert all(math.isfinite(v) and v < 0 for v in values)
    assert len({round(v, 3) for v in values}) > len(values) // 2  # the tiny model is not degenerate


@pytest.mark.parametrize("strategy", ["cache", "tree"])
@pytest.mark.parametrize("batch_size", [None, 1, 2, 7])
def test_fast_path_matches_unbatched_reference(lm, requests_, reference, batch_size, strategy):
    scorer = Scorer(lm, batch_size=batch_size, strategy=strategy)
    _close(scorer.score(requests_), reference)
    assert not scorer.reference  # the fast path passed its self-check and was used


@pytest.mark.parametrize("strategy", ["cache", "tree"])
def test_tiny_memory_budget_many_batches(lm, requests_, reference, strategy):
    small = Scorer(lm, memory_budget_mb=0, strategy=strategy)  # smallest token budget: many small batches
    _close(small.score(requests_), reference)
    default = Scorer(lm, strategy=strategy)
    default.score(requests_)
    assert small.forward_passes > default.forward_passes


def test_batch_size_1_vs_7_and_forward_counts(lm, requests_):
    s1, s7 = Scorer(lm, batch_size=1), Scorer(lm, batch_size=7)
    _close(s1.score(requests_), s7.score(requests_))
    assert s1.forward_passes > s7.forward_passes > 0


@pytest.mark.parametrize("strategy", ["cache", "tree"])
def test_order_invariance(lm, requests_, reference, strategy):
    perm = list(range(len(requests_)))
    random.Random(1).shuffle(perm)
    shuffled = Scorer(lm, batch_size=5, strategy=strategy).score([requests_[i] for i in perm])
    _close([shuffled[perm.index(i)] for i in range(len(requests_))], reference)


def test_tokenizer_padding_side_does_not_matter(lm, requests_):
    tok = lm.tokenizer
    old = tok.padding_side
    try:
        tok.padding_side = "left"
        left = Scorer(lm, batch_size=6).score(requests_)
        tok.padding_side = "right"
        right = Scorer(lm, batch_size=6).score(requests_)
    finally:
        tok.padding_side = old
    _close(left, right)


def test_shared_prompts_vs_alone(lm, requests_, reference):
    alone = [Scorer(lm).score([r])[0] for r in requests_[:12]]
    _close(alone, reference[:12])


def test_upstream_tokenisation(lm):
    tok = lm.tokenizer
    scorer = Scorer(lm)
    (ctx, resp), (ctx2, resp2) = scorer.encode([("Hello there", "General"), ("", "x")])
    raw = tok("Hello there", add_special_tokens=False)["input_ids"]
    assert ctx == raw  # no special tokens added to the prompt
    assert resp == tok("General", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert resp[-1] == tok.eos_token_id and resp.count(tok.eos_token_id) == 1
    # an empty prompt gets a one-token BOS/EOS context instead of none
    assert len(ctx2) == 1 and resp2[-1] == tok.eos_token_id
    score = scorer.score([("Hello there", "General")])[0]
    assert (score.prompt_tokens, score.n_tokens) == (len(ctx), len(resp))


def test_fits_rule(lm):
    scorer = Scorer(lm)
    p, r = PROMPTS[0], RESPONSES[0]
    n = len(lm.tokenizer(p + r + lm.tokenizer.eos_token)["input_ids"])
    old = lm.max_length
    try:
        lm.max_length = n
        assert scorer.fits(p, r)
        lm.max_length = n - 1
        assert not scorer.fits(p, r)
        with pytest.raises(ModelError, match="more than the model"):
            scorer.score([(p, r)])
    finally:
        lm.max_length = old


def test_bad_requests(lm):
    with pytest.raises(ConfigError):
        Scorer(lm).score([("only a prompt",)])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        Scorer(lm, batch_size=0)
    with pytest.raises(ConfigError, match="strategy"):
        Scorer(lm, strategy="magic")  # type: ignore[arg-type]
    assert Scorer(lm).score([]) == []


def test_reference_flag_counts_one_forward_per_request(lm, requests_):
    scorer = Scorer(lm, reference=True)
    scorer.score(requests_[:5])
    assert scorer.forward_passes == 5


# ------------------------------------------------------------------ pair probabilities


def _s(total: float, n: int, prompt: int) -> ResponseScore:
    return ResponseScore(total, n, prompt)


def test_pair_p_correct_hand_computed():
    correct = [_s(-2.0, 2, 3), _s(-10.0, 5, 1)]
    wrong = [_s(-5.0, 4, 3), _s(-4.0, 1, 1)]
    # upstream: L = prompt + longer response; p = 1/(1+exp(-(Sc-Sw)/(L-1)))
    up = pair_p_correct(correct, wrong, "upstream")
    assert up[0] == pytest.approx(1 / (1 + math.exp(-3.0 / 6)), abs=1e-12)
    assert up[1] == pytest.approx(1 / (1 + math.exp(6.0 / 5)), abs=1e-12)
    mean = pair_p_correct(correct, wrong, "mean")
    assert mean[0] == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.25))), abs=1e-12)
    assert mean[1] == pytest.approx(1 / (1 + math.exp(-(-2.0 + 4.0))), abs=1e-12)
    total = pair_p_correct(correct, wrong, "sum")
    assert total[0] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-12)
    assert total[1] == pytest.approx(1 / (1 + math.exp(6.0)), abs=1e-12)
    # ties are exactly 0.5 and extreme differences do not overflow
    assert pair_p_correct([_s(-1, 1, 1)], [_s(-1, 1, 1)])[0] == 0.5
    assert pair_p_correct([_s(-1, 1, 1)], [_s(-5000, 1, 1)], "sum")[0] == 1.0
    assert pair_p_correct([_s(-5000, 1, 1)], [_s(-1, 1, 1)], "sum")[0] == 0.0


def test_pair_p_correct_errors():
    with pytest.raises(ConfigError, match="unknown scoring method"):
        pair_p_correct([_s(-1, 1, 1)], [_s(-1, 1, 1)], "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pair_p_correct([_s(-1, 1, 1)], [])
    assert pair_p_correct([], []).shape == (0,)


def test_pair_probabilities_from_the_model(lm):
    p = PROMPTS[0]
    scores = Scorer(lm).score([(p, RESPONSES[0]), (p, RESPONSES[1])])
    up = pair_p_correct([scores[0]], [scores[1]])
    flipped = pair_p_correct([scores[1]], [scores[0]])
    assert np.allclose(up + flipped, 1.0)
    assert (up[0] > 0.5) == (scores[0].logprob_sum > scores[1].logprob_sum)


def test_sliding_window_models_use_the_cache_strategy(lm, requests_, reference):
    """A sliding-window config selects the cache strategy; requests longer than the window use the
    oracle. (The tiny LLaMA ignores the window, so scores must still equal the reference.)"""
    lm.model.config.sliding_window = 20
    try:
        scorer = Scorer(lm)
        assert scorer.strategy == "cache"
        _close(scorer.score(requests_), reference)
    finally:
        lm.model.config.sliding_window = None
    assert Scorer(lm).strategy == "tree"


def test_self_check_falls_back_to_the_reference(lm, requests_, reference, monkeypatch):
    """If the fast path ever disagrees with the model's own forward, scoring stays correct."""
    import torch

    monkeypatch.setattr(Scorer, "_logprobs", lambda self, hidden, targets: torch.zeros(len(targets)))
    saved = dict(lm.info)
    lm.info.pop("fast_scoring_ok[tree]", None)
    try:
        scorer = Scorer(lm)
        with pytest.warns(UserWarning, match="reference path"):
            out = scorer.score(requests_[:5])
        assert scorer.reference
        _close(out, reference[:5])
    finally:
        lm.info.clear()
        lm.info.update(saved)
