"""Templates render positionally; lengths computed from a tokenizer alone equal what the engine runs;
tokenizer, context length and compute settings are known without loading weights."""

from __future__ import annotations

import pytest

from genies.errors import ConfigError, ModelError
from genies.models.lengths import encode_texts, scoring_lengths, text_lengths
from genies.models.loading import compute_settings, load_model, load_tokenizer, max_length
from genies.models.templates import render, render_all, template_key


def test_render_is_positional_and_never_formats_the_data():
    t = "{prompt}Consider:\n{response}\n\nThe probability"
    assert render(t, "P {x}", "R {prompt} {0}") == "P {x}Consider:\nR {prompt} {0}\n\nThe probability"
    assert render("{response} after {prompt}", "p", "r") == "r after p"
    assert render(None, "a{", "}b") == "a{}b"
    assert render_all(["plain {text}"]) == ["plain {text}"]
    assert template_key(None) == "plain" and template_key(t) == template_key(t) != template_key(t + " ")


@pytest.mark.parametrize("bad", ["{prompt} only", "{prompt}{response}{response}", "no fields", 3])
def test_bad_templates(bad):
    with pytest.raises(ConfigError):
        render(bad, "p", "r")  # type: ignore[arg-type]


def test_lengths_without_the_model_equal_the_engine(tiny_model_dir):
    name = str(tiny_model_dir)
    tok = load_tokenizer(name)
    lm = load_model(name, device="cpu")
    assert max_length(name) == lm.max_length == 512
    reqs = [("Hello there. ", "General Kenobi!"), ("", "x"), ("p", "")]
    from genies.models.engine import ForwardEngine

    engine = ForwardEngine(lm)
    assert scoring_lengths(tok, reqs) == [len(c) + len(r) for c, r in engine.encode(reqs)]
    texts = [("Hello", " there"), ("a", "b")]
    assert text_lengths(tok, texts) == [len(ids) for ids in encode_texts(lm.tokenizer, texts)]
    assert text_lengths(tok, texts, "{prompt}::{response}") == [
        len(lm.tokenizer("Hello:: there")["input_ids"]),
        len(lm.tokenizer("a::b")["input_ids"]),
    ]


def test_compute_settings_name_the_attention_the_model_runs(tiny_model_dir):
    settings = compute_settings("cpu", None)
    assert settings == {"device_type": "cpu", "dtype": "float32", "attn_implementation": "sdpa"}
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert lm.model.config._attn_implementation == settings["attn_implementation"]


def test_tokenizer_of_a_missing_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nope"))
