"""zero_shot / few_shot scoring on the tiny random LLaMA: equivalences, invariances, drops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genies.data.schema import Example, Pair, Split
from genies.interventions import get_intervention
from genies.interventions.few_shot import build_prompt, sample_shots

TEST = Split(
    "test",
    [
        Example(
            "What is the capital of France?", ((" Paris.", 1.0), (" Rome.", 0.0), (" Madrid is.", 0.0)), 0
        ),
        Example("def add(a, b):\n", (("    return a - b\n", 0.0), ("    return a + b\n", 1.0)), 1),
        Example("", (("hola", 1.0), ("The quick brown fox", 0.0), ("0123", 0.0), ("dog", 0.0)), 2),
        Example("Say hi.", ((" hi", 1.0), (" hi!", 0.0)), 3),
    ],
    "toy_test",
)
TRAIN = Split(
    "train",
    [
        Example("Say hi.", ((" hi", 1.0), (" bye", 0.0)), 0),  # same prompt as a test example
        Example("Count: 1 2", ((" 3", 1.0), (" 9", 0.0)), 1),
        Example("Capital of Spain?", ((" Madrid", 1.0), (" Paris", 0.0)), 2),
        Example("Opposite of up?", ((" left", 0.0), (" down", 1.0)), 3),
        Example("Colour of grass?", ((" green", 1.0), (" red", 0.0)), 4),
        Example("2+2=", (("5", 0.0), ("4", 1.0)), 5),
    ],
    "toy_train",
)
PAIRS = TEST.to_pairs("all")


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    from genies.models.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def _manual_upstream_p(lm, pairs: list[Pair]) -> np.ndarray:
    """Independent re-computation of upstream §4.1: summed log-prob of response+EOS, shared 1/(L−1)."""
    import torch

    tok, model = lm.tokenizer, lm.model

    def ids_and_logprob(prompt: str, response: str) -> tuple[int, float]:
        # an empty prompt gets BOS (else EOS) as one-token context (genies.models.scoring's documented rule)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"] or [
            tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        ]
        r_ids = tok(response + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r_ids], device=lm.device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()[0]
        logp = torch.log_softmax(logits, dim=-1)
        total = sum(float(logp[t - 1, ids[0, t]]) for t in range(len(p_ids), ids.shape[1]))
        return ids.shape[1], total

    out = []
    for pair in pairs:
        lc, sc = ids_and_logprob(pair.prompt, pair.correct)
        lw, sw = ids_and_logprob(pair.prompt, pair.incorrect)
        L = max(lc, lw)
        out.append(1.0 / (1.0 + np.exp(-(sc - sw) / (L - 1))))
    return np.array(out)


def _zero_shot(lm, pairs, seed=0, **cfg):
    iv = get_intervention("zero_shot")
    config = iv.make_config(cfg)
    state = iv.fit(None, TRAIN, config, seed=seed)
    return iv.score_pairs(lm, state, pairs, config, seed=seed)


def test_zero_shot_matches_scorer_and_manual_computation(lm):
    from genies.models.scoring import Scorer, pair_p_correct

    scored = _zero_shot(lm, PAIRS)
    assert scored.pair_ids == [p.id for p in PAIRS]
    assert scored.dropped == 0 and scored.info["dropped_examples"] == 0
    # every (prompt, response) once: 3 + 2 + 4 + 2 responses
    assert scored.info["requests"] == 11

    scorer = Scorer(lm)
    for method in ("upstream", "mean", "sum"):
        c = scorer.score([(p.prompt, p.correct) for p in PAIRS])
        w = scorer.score([(p.prompt, p.incorrect) for p in PAIRS])
        expected = pair_p_correct(c, w, method=method)
        got = _zero_shot(lm, PAIRS, scoring=method).p_correct
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)

    manual = _manual_upstream_p(lm, PAIRS)
    np.testing.assert_allclose(scored.p_correct, manual, rtol=0, atol=1e-4)
    assert len(set(np.round(scored.p_correct, 6))) > 3  # the random model does distinguish texts


@pytest.mark.parametrize("method", ["upstream", "mean", "sum"])
def test_response_order_invariance(lm, method):
    swapped = [dataclasses.replace(p, correct=p.incorrect, incorrect=p.correct) for p in PAIRS]
    a = _zero_shot(lm, PAIRS, scoring=method).p_correct
    b = _zero_shot(lm, swapped, scoring=method).p_correct
    np.testing.assert_allclose(a + b, 1.0, rtol=0, atol=1e-6)


def test_pair_order_and_subset_invariance(lm):
    full = dict(zip([p.id for p in PAIRS], _zero_shot(lm, PAIRS).p_correct, strict=True))
    rev = _zero_shot(lm, PAIRS[::-1])
    assert rev.pair_ids == [p.id for p in PAIRS[::-1]]
    for pid, p in zip(rev.pair_ids, rev.p_correct, strict=True):
        assert p == pytest.approx(full[pid], abs=1e-6)


@pytest.mark.parametrize("name", ["zero_shot", "few_shot"])
def test_batch_size_invariance(lm, name):
    iv = get_intervention(name)
    results = []
    for bs in (None, 1, 3, 64):
        cfg = iv.make_config({"batch_size": bs})
        state = iv.fit(None, TRAIN, cfg, seed=0)
        results.append(iv.score_pairs(lm, state, PAIRS, cfg, seed=0).p_correct)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-5)


def test_few_shot_equals_zero_shot_on_prefixed_prompts(lm):
    iv = get_intervention("few_shot")
    cfg = iv.make_config({"num_shots": 2})
    state = iv.fit(None, TRAIN, cfg, seed=7)
    scored = iv.score_pairs(lm, state, PAIRS, cfg, seed=7)
    assert scored.dropped == 0
    pool = [(ex.prompt, ex.best) for ex in TRAIN.examples]
    prefixed = []
    for pair in PAIRS:
        shots = sample_shots(pool, pair.prompt, 2, seed=7)
        assert ("Say hi.", " hi") not in shots or pair.prompt != "Say hi."
        prefixed.append(dataclasses.replace(pair, prompt=build_prompt(shots, pair.prompt)))
    expected = _zero_shot(lm, prefixed).p_correct
    np.testing.assert_allclose(scored.p_correct, expected, rtol=0, atol=1e-6)
    assert scored.info["examples_with_same_prompt_in_pool"] == 1
    assert scored.info["examples_with_fewer_shots"] == 0
    # each example is scored once per distinct response, with a shared prefix for all its pairs
    assert scored.info["requests"] == 11

    # a different seed changes the demonstrations, hence the scores
    other = iv.score_pairs(lm, state, PAIRS, cfg, seed=8).p_correct
    assert not np.allclose(other, scored.p_correct)
    # the same seed reproduces them exactly
    np.testing.assert_array_equal(iv.score_pairs(lm, state, PAIRS, cfg, seed=7).p_correct, scored.p_correct)


def test_few_shot_uses_all_eligible_when_pool_is_small(lm):
    iv = get_intervention("few_shot")
    cfg = iv.make_config({"num_shots": 10})
    scored = iv.score_pairs(lm, iv.fit(None, TRAIN, cfg, seed=0), PAIRS, cfg, seed=0)
    # 6 pool entries (5 for the "Say hi." example, whose duplicate prompt is excluded)
    assert scored.info["examples_with_fewer_shots"] == 4
    assert scored.info["pool_size"] == 6


def _needed(lm, prompt: str, response: str) -> int:
    """Tokens an example needs: upstream's joint count (default special tokens) or the separately
    tokenised prompt and response that are actually scored, whichever is longer."""
    tok, eos = lm.tokenizer, lm.tokenizer.eos_token
    joint = len(tok(prompt + response + eos)["input_ids"])
    separate = len(tok(prompt, add_special_tokens=False)["input_ids"] or [0]) + len(
        tok(response + eos, add_special_tokens=False)["input_ids"]
    )
    return max(joint, separate)


def test_over_length_examples_are_dropped_whole(lm):
    longest = {ex.index: max(_needed(lm, ex.prompt, t) for t in ex.texts) for ex in TEST.examples}
    limit = sorted(longest.values())[1]  # keeps the two shortest examples (ties aside), drops the rest
    small = dataclasses.replace(lm, max_length=limit)
    scored = _zero_shot(small, PAIRS)
    kept_examples = {i for i, n in longest.items() if n <= limit}
    assert 0 < len(kept_examples) < len(TEST.examples)
    expected_ids = [p.id for p in PAIRS if p.example_index in kept_examples]
    assert scored.pair_ids == expected_ids
    assert scored.dropped == len(PAIRS) - len(expected_ids)
    assert scored.info["dropped_examples"] == len(TEST.examples) - len(kept_examples)
    # kept pairs score exactly as without the limit
    full = dict(zip([p.id for p in PAIRS], _zero_shot(lm, PAIRS).p_correct, strict=True))
    np.testing.assert_allclose(scored.p_correct, [full[i] for i in expected_ids], rtol=0, atol=1e-6)


def test_few_shot_prefix_counts_toward_length(lm):
    iv = get_intervention("few_shot")
    longest_plain = max(_needed(lm, ex.prompt, t) for ex in TEST.examples for t in ex.texts)
    small = dataclasses.replace(lm, max_length=longest_plain)  # everything fits without shots
    assert _zero_shot(small, PAIRS).dropped == 0
    cfg = iv.make_config({"num_shots": 4})
    scored = iv.score_pairs(small, iv.fit(None, TRAIN, cfg, seed=0), PAIRS, cfg, seed=0)
    assert scored.dropped > 0
    assert scored.dropped + len(scored.pair_ids) == len(PAIRS)


def test_empty_pairs_and_wrong_state(lm):
    from genies.errors import StoreError

    assert _zero_shot(lm, []).pair_ids == []
    zs, fs = get_intervention("zero_shot"), get_intervention("few_shot")
    state = zs.fit(None, TRAIN, zs.make_config({}), seed=0)
    with pytest.raises(StoreError):
        fs.score_pairs(lm, state, PAIRS, fs.make_config({}), seed=0)
