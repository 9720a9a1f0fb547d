"""The on-disk activation cache: one forward per text fills every site, cached reads load no model,
bad shards are reported and recomputed, never used."""

from __future__ import annotations

import json

import pytest
import torch

from genies.errors import ConfigError, ModelError, StoreError
from genies.models.activation_cache import ActivationCache, text_sha256
from genies.models.engine import ForwardEngine
from genies.models.loading import load_model
from genies.models.templates import render_all

TEXTS = [
    ("### Instruction:\nName a colour.\n### Response:\n", "Blue"),
    ("### Instruction:\nName a colour.\n### Response:\n", "Seven"),
    ("The quick brown fox", " jumps over the lazy dog."),
]
TEMPLATE = "{prompt}Consider the extent:\n{response}\n\nThe probability"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ForwardEngine(load_model(str(tiny_model_dir), device="cpu"))


class Loader:
    """The ``engine`` callable: counts how often the cache asked for the model."""

    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def __call__(self):
        self.calls += 1
        return self.engine


def _by_unit(engine, texts, sites):
    """The engine's activations of ``texts`` extracted as the cache does: one forward per prompt,
    its distinct texts sorted by the sha256 of their rendering."""

    def key(t):
        return text_sha256(render_all([t], None)[0])

    out = {s: torch.empty((len(texts), *engine.sites.shape(s))) for s in sites}
    for prompt in dict.fromkeys(t[0] for t in texts):
        unit = sorted({t for t in texts if t[0] == prompt}, key=key)
        acts = engine.extract(unit, sites)
        for i, t in enumerate(texts):
            if t[0] == prompt:
                for s in sites:
                    out[s][i] = acts[s][unit.index(t)]
    return out


def _shards(cache, template=None):
    return sorted(cache.folder(template).glob("shard-*.safetensors"))


def test_cached_read_loads_no_model_and_equals_the_engine(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    load = Loader(engine)
    assert cache.missing(TEXTS, ("resid",)) == [0, 1, 2]
    first = cache.get(load, TEXTS, ("resid", "heads"))
    assert load.calls == 1 and cache.stats["texts_computed"] == 3
    direct = _by_unit(engine, TEXTS, ("resid", "heads"))
    for s in ("resid", "heads"):
        assert torch.equal(first[s], direct[s])
    # a new cache object (a new process) on the same folder: every site was stored by that one forward
    again = ActivationCache(tmp_path, "model-a")
    assert again.missing(TEXTS, ("resid", "heads", "final")) == []
    got = again.get(Loader(None), TEXTS[::-1] + TEXTS[:1], ("final", "resid"))
    assert set(got) == {"final", "resid"}
    assert torch.equal(got["resid"][0], first["resid"][2]) and torch.equal(got["resid"][3], first["resid"][0])
    assert again.stats == {"texts_cached": 4, "texts_computed": 0, "forward_tokens": 0, "bad_shards": 0}


def test_partial_hits_compute_only_the_rest(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    cache.get(Loader(engine), TEXTS[:1], ("resid",))
    load = Loader(engine)
    cache.get(load, TEXTS, ("resid",))
    assert load.calls == 1 and cache.stats["texts_computed"] == 3 and cache.stats["texts_cached"] == 1
    assert cache.stats["forward_tokens"] > 0 and len(_shards(cache)) == 2


def test_keys_separate_templates_models_and_dtypes(tmp_path, engine):
    plain = ActivationCache(tmp_path, "model-a")
    plain.get(Loader(engine), TEXTS, ("resid",))
    assert plain.missing(TEXTS, ("resid",), TEMPLATE) == [0, 1, 2]
    templated = plain.get(Loader(engine), TEXTS, ("resid",), TEMPLATE)
    assert torch.allclose(templated["resid"], engine.extract(TEXTS, ("resid",), TEMPLATE)["resid"])
    assert ActivationCache(tmp_path, "model-b").missing(TEXTS) == [0, 1, 2]
    bf16 = ActivationCache(tmp_path, "model-a", dtype="bfloat16")
    assert bf16.missing(TEXTS) == [0, 1, 2]
    low = bf16.get(Loader(engine), TEXTS, ("resid",))["resid"]
    assert low.dtype == torch.float32
    full = plain.get(Loader(None), TEXTS, ("resid",))["resid"]
    assert torch.allclose(low, full, rtol=1e-2, atol=1e-2) and not torch.equal(low, full)


def test_atomic_writes_leave_no_temporary_files(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    cache.get(Loader(engine), TEXTS, ("resid",))
    names = [p.name for p in cache.folder().iterdir()]
    assert sorted(n.split("-")[0] for n in names) == ["meta.json", "shard"]
    meta = json.loads((cache.folder() / "meta.json").read_text())
    assert meta["shapes"]["resid"] == list(engine.sites.shape("resid"))


def test_truncated_shard_is_reported_and_recomputed(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    good = cache.get(Loader(engine), TEXTS, ("resid",))
    (shard,) = _shards(cache)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    fresh = ActivationCache(tmp_path, "model-a")
    with pytest.warns(UserWarning, match="unreadable.*recomputed"):
        assert fresh.missing(TEXTS) == [0, 1, 2]  # never used
    load = Loader(engine)
    got = fresh.get(load, TEXTS, ("resid",))
    assert load.calls == 1 and torch.equal(got["resid"], good["resid"])
    assert fresh.stats["bad_shards"] == 1 and shard.with_suffix(".safetensors.bad").exists()


def test_truncation_is_reported_by_get(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    cache.get(Loader(engine), TEXTS, ("resid",))
    (shard,) = _shards(cache)
    shard.write_bytes(shard.read_bytes()[:-100])
    fresh = ActivationCache(tmp_path, "model-a")
    with pytest.warns(UserWarning, match="is unreadable"):
        fresh.get(Loader(engine), TEXTS, ("resid",))
    assert fresh.stats["texts_computed"] == 3


def test_mis_shaped_shard_is_not_used(tmp_path, engine):
    from safetensors.torch import save_file

    cache = ActivationCache(tmp_path, "model-a")
    good = cache.get(Loader(engine), TEXTS[:1], ("resid",))
    folder = cache.folder()
    bad = {s: torch.zeros(3, 5) for s in ("resid", "heads", "final")}
    save_file(bad, str(folder / "shard-0-bad.safetensors"), metadata={"texts": json.dumps(["x", "y", "z"])})
    fresh = ActivationCache(tmp_path, "model-a")
    with pytest.warns(UserWarning, match="mis-shaped"):
        got = fresh.get(Loader(None), TEXTS[:1], ("resid",))
    assert torch.equal(got["resid"], good["resid"]) and fresh.stats["bad_shards"] == 1


def test_corrupt_bytes_are_detected_and_recomputed(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    good = cache.get(Loader(engine), TEXTS, ("resid",))
    (shard,) = _shards(cache)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in the last tensor's data: the header is intact
    shard.write_bytes(bytes(data))
    fresh = ActivationCache(tmp_path, "model-a")
    assert fresh.missing(TEXTS) == []  # the header looks fine...
    load = Loader(engine)
    with pytest.warns(UserWarning, match="corrupt"):
        got = fresh.get(load, TEXTS, ("resid", "heads", "final"))
    assert load.calls == 1 and torch.equal(got["resid"], good["resid"])  # ...but its bytes are never used


def test_overlength_and_bad_arguments(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    long = ("word " * 600, "x")
    with pytest.raises(ModelError, match="more than the model's 512"):
        cache.get(Loader(engine), [TEXTS[0], long], ("resid",))
    got = cache.get(Loader(engine), [TEXTS[0], long], ("resid",), overlength="drop")
    assert got["kept"].tolist() == [True, False] and torch.isnan(got["resid"][1]).all()
    assert cache.missing([long]) == [0]  # dropped texts are not stored
    with pytest.raises(ConfigError, match="unknown activation site"):
        cache.get(Loader(engine), TEXTS, ("mlp",))
    with pytest.raises(ConfigError, match="dtype"):
        ActivationCache(tmp_path, "m", dtype="float16")  # type: ignore[arg-type]
    odd = ActivationCache(tmp_path, "../../escape")
    assert odd.folder().resolve().is_relative_to(tmp_path.resolve())


def test_a_model_key_that_does_not_identify_the_model(tmp_path, engine, tiny_gemma_dir):
    ActivationCache(tmp_path, "same-key").get(Loader(engine), TEXTS[:1], ("resid",))
    other = ForwardEngine(load_model(str(tiny_gemma_dir), device="cpu"))
    with pytest.raises(StoreError, match="does not identify one model"):
        ActivationCache(tmp_path, "same-key").get(Loader(other), TEXTS[1:2], ("resid",))


OTHERS = [
    ("### Instruction:\nCount to three.\n### Response:\n", f"One, two, three{'.' * k}") for k in range(1, 6)
] + [("A long and winding road " * 6, " ends here.")]


def test_a_texts_activations_do_not_depend_on_what_else_was_asked_or_in_which_order(tmp_path, engine):
    """The engine's rows depend on the order of a forward's texts at float rounding (so the cache
    could store either rounding, whichever node asked first); the cache's do not. Packing with other
    prompts rounds differently on SmolLM2 only (tests/models/test_real_engine.py)."""
    sites = ("resid", "heads", "final")
    forward = engine.extract(TEXTS[:2], sites)
    backward = engine.extract(TEXTS[1::-1], sites)
    assert not all(torch.equal(forward[s], backward[s][[1, 0]]) for s in sites), (
        "no rounding to guard against"
    )
    a = ActivationCache(tmp_path / "a", "m").get(Loader(engine), TEXTS[:2], sites)
    b = ActivationCache(tmp_path / "b", "m").get(Loader(engine), OTHERS[::-1] + TEXTS[1::-1], sites)
    for s in sites:
        assert torch.equal(a[s], b[s][[-1, -2]])


def test_a_unit_with_a_cached_sibling_is_recomputed_whole_and_writes_only_the_new_text(tmp_path, engine):
    cache = ActivationCache(tmp_path, "m")
    load = Loader(engine)
    first = cache.get(load, TEXTS[:1], ("resid",))
    both = cache.get(load, TEXTS[:2], ("resid",))
    assert cache.stats["texts_computed"] == 2 and cache.stats["texts_cached"] == 1
    assert torch.equal(both["resid"][0], first["resid"][0])  # what was served stays served
    assert torch.equal(both["resid"][1], _by_unit(engine, TEXTS[:2], ("resid",))["resid"][1])
    assert len(_shards(cache)) == 2
