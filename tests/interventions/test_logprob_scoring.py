"""zero_shot / few_shot scoring on the tiny random LLaMA: equivalences, invariances, length rules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from genies.api.context import InterventionContext
from genies.data.schema import Distribution, Example, Pair, Split
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


def _ctx(lm, seed=0) -> InterventionContext:
    return InterventionContext.for_model(lm, seed=seed)


def _fit_score(name, lm, pairs, seed=0, train=TRAIN, **cfg):
    iv = get_intervention(name)
    config = iv.make_config(cfg)
    ctx = _ctx(lm, seed)
    return iv.score_pairs(ctx, iv.fit(ctx, train, config), pairs, config)


def _zero_shot(lm, pairs, seed=0, **cfg):
    return _fit_score("zero_shot", lm, pairs, seed, **cfg)


def test_zero_shot_matches_scorer_and_manual_computation(lm):
    from genies.models.scoring import Scorer, pair_p_correct

    scored = _zero_shot(lm, PAIRS)
    assert scored.pair_ids == [p.id for p in PAIRS]
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
    results = []
    for bs in (None, 1, 3, 64):
        results.append(_fit_score(name, lm, PAIRS, batch_size=bs).p_correct)
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], rtol=0, atol=1e-5)


def test_few_shot_equals_zero_shot_on_prefixed_prompts(lm):
    iv = get_intervention("few_shot")
    cfg = iv.make_config({"num_shots": 2})
    state = iv.fit(_ctx(lm, 7), TRAIN, cfg)
    scored = iv.score_pairs(_ctx(lm, 7), state, PAIRS, cfg)
    assert scored.info["examples_with_shots_cut"] == 0
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
    other = iv.score_pairs(_ctx(lm, 8), state, PAIRS, cfg).p_correct
    assert not np.allclose(other, scored.p_correct)
    # the same seed reproduces them exactly
    np.testing.assert_array_equal(iv.score_pairs(_ctx(lm, 7), state, PAIRS, cfg).p_correct, scored.p_correct)


def test_few_shot_uses_all_eligible_when_pool_is_small(lm):
    scored = _fit_score("few_shot", lm, PAIRS, num_shots=10)
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


def _kept_ids(lm, max_length, pairs_of=TEST):
    """The pair ids the pipeline keeps at the data level for the scoring rule (genies.pipeline)."""
    from genies.api.intervention import LengthRule
    from genies.lengths import example_lengths
    from genies.pipeline.nodes import eval_selection

    longest = example_lengths(lm.tokenizer, LengthRule("scoring"), pairs_of.examples)
    over = {ex.index for ex, n in zip(pairs_of.examples, longest, strict=True) if n > max_length}
    dist = Distribution("toy_test", TRAIN, pairs_of)
    return eval_selection(dist, "test", None, over)["pair_ids"], longest


def test_over_length_examples_are_dropped_whole_at_the_data_level(lm):
    longest = {ex.index: max(_needed(lm, ex.prompt, t) for t in ex.texts) for ex in TEST.examples}
    limit = sorted(longest.values())[1]  # keeps the two shortest examples (ties aside), drops the rest
    kept, counted = _kept_ids(lm, limit)
    assert counted == [longest[ex.index] for ex in TEST.examples]  # genies.lengths = the independent count
    kept_examples = {i for i, n in longest.items() if n <= limit}
    assert 0 < len(kept_examples) < len(TEST.examples)
    expected_ids = [p.id for p in PAIRS if p.example_index in kept_examples]
    assert kept == expected_ids  # whole examples go: every pair of a dropped example
    # kept pairs score exactly as without the limit, and a small model can score them
    small = dataclasses.replace(lm, max_length=limit)
    kept_pairs = [p for p in PAIRS if p.id in set(kept)]
    scored = _zero_shot(small, kept_pairs)
    full = dict(zip([p.id for p in PAIRS], _zero_shot(lm, PAIRS).p_correct, strict=True))
    np.testing.assert_allclose(scored.p_correct, [full[i] for i in expected_ids], rtol=0, atol=1e-6)


def test_few_shot_keeps_every_example_that_fits_and_cuts_demonstrations_to_fit(lm):
    """few_shot's length rule is zero_shot's: an example too long with its demonstrations keeps as
    many as fit (so its row compares the same pairs as the zero-shot baseline)."""
    longest_plain = max(_needed(lm, ex.prompt, t) for ex in TEST.examples for t in ex.texts)
    small = dataclasses.replace(lm, max_length=longest_plain + 2)  # everything fits without shots
    assert _kept_ids(lm, small.max_length)[0] == [p.id for p in PAIRS]
    iv = get_intervention("few_shot")
    cfg = iv.make_config({"num_shots": 4})
    state = iv.fit(_ctx(small), TRAIN, cfg)
    scored = iv.score_pairs(_ctx(small), state, PAIRS, cfg)  # would raise if a request did not fit
    assert scored.pair_ids == [p.id for p in PAIRS]
    assert scored.info["examples_with_shots_cut"] > 0 and scored.info["shots_cut"] > 0
    # examples whose demonstrations all fit are scored exactly as without the limit
    roomy = iv.score_pairs(_ctx(lm), iv.fit(_ctx(lm), TRAIN, cfg), PAIRS, cfg)
    assert roomy.info["examples_with_shots_cut"] == 0
    pool = [(ex.prompt, ex.best) for ex in TRAIN.examples]
    for i, pair in enumerate(PAIRS):
        prompt = build_prompt(sample_shots(pool, pair.prompt, 4, seed=0), pair.prompt)
        fits = all(_needed(lm, prompt, t) <= small.max_length for t in (pair.correct, pair.incorrect))
        fits = fits and all(
            _needed(lm, prompt, t) <= small.max_length
            for ex in TEST.examples
            if ex.index == pair.example_index
            for t in ex.texts
        )
        if fits:
            assert scored.p_correct[i] == pytest.approx(roomy.p_correct[i], abs=1e-6)
        else:
            assert scored.p_correct[i] != pytest.approx(roomy.p_correct[i], abs=1e-9)


def test_empty_pairs_and_wrong_state(lm):
    from genies.errors import StoreError

    assert _zero_shot(lm, []).pair_ids == []
    zs, fs = get_intervention("zero_shot"), get_intervention("few_shot")
    state = zs.fit(_ctx(lm), TRAIN, zs.make_config({}))
    with pytest.raises(StoreError):
        fs.score_pairs(_ctx(lm), state, PAIRS, fs.make_config({}))
