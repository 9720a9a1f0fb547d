"""The representation methods on the real (tiny, random) architectures the engine hooks: LLaMA with
GQA, Gemma-3 (sliding window, heads × head_dim ≠ hidden), GPT-NeoX; and one clear error for an
architecture whose sites cannot be found."""

from __future__ import annotations

import numpy as np
import pytest
from repr_helpers import make_split

from genies.api.context import InterventionContext
from genies.errors import GeniesError
from genies.interventions.registry import get_intervention
from genies.models.loading import load_model


def _builders():
    from genies import testing

    return {
        "llama": testing.make_tiny_llama,
        "gemma3": testing.make_tiny_gemma3,
        "neox": testing.make_tiny_neox,
    }


@pytest.mark.parametrize("arch", ["llama", "gemma3", "neox"])
def test_mms_and_lat_on_each_architecture(arch, tmp_path):
    folder = _builders()[arch](tmp_path / arch)
    lm = load_model(str(folder), device="cpu")
    with InterventionContext.for_model(lm, seed=0, activations_root=tmp_path / "acts", model_key=arch) as ctx:
        pairs = make_split(4, offset=100, name="test").to_pairs("all")
        for name in ("mms", "lat_stim_1", "linear_probe"):
            iv = get_intervention(name)
            cfg = iv.make_config({})
            state = iv.fit(ctx, make_split(6), cfg)
            scored = iv.score_pairs(ctx, state, pairs, cfg)
            assert np.all(np.isfinite(scored.p_correct)) and len(scored.p_correct) == len(pairs)
        heads = ctx.activations([(pairs[0].prompt, pairs[0].correct)], ("heads",))["heads"]
        config = lm.model.config
        assert heads.shape[1:3] == (config.num_hidden_layers, config.num_attention_heads)


def test_architecture_without_sites_is_one_clear_error(tmp_path, tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    for layer in lm.model.model.layers:  # a layout the engine does not know: no o_proj/dense/…
        attn = layer.self_attn
        attn.add_module("output_projection", attn.o_proj)
        del attn.o_proj
    ctx = InterventionContext.for_model(lm, seed=0, activations_root=tmp_path / "acts", model_key="renamed")
    iv = get_intervention("mms")
    with pytest.raises(GeniesError) as err:
        iv.fit(ctx, make_split(4), iv.make_config({}))
    message = str(err.value)
    assert "LlamaForCausalLM" in message and "no attention output projection" in message
    assert "\n" not in message.strip()
