"""``ActivationCache.reader``: one site read block by block equals ``get``; bad bytes are never served."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from genies.models.activation_cache import ActivationCache
from genies.models.engine import ForwardEngine
from genies.models.loading import load_model

from .test_activation_cache import TEXTS, Loader, _by_unit, _shards


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ForwardEngine(load_model(str(tiny_model_dir), device="cpu"))


def test_blocks_equal_get_in_any_text_order(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    cache.get(Loader(engine), TEXTS[:2], ("resid",))  # two shards: the reader gathers across them
    order = [TEXTS[2], TEXTS[0], TEXTS[1], TEXTS[0]]
    full = cache.get(Loader(engine), order, ("heads", "resid"))
    assert len(_shards(cache)) == 2
    for site in ("heads", "resid"):
        r = ActivationCache(tmp_path, "model-a").reader(Loader(None), order, site)
        assert r.shape == tuple(full[site].shape)
        blocks = [r.read(slice(i, i + 1)) for i in range(r.shape[1])]
        assert np.array_equal(np.concatenate(blocks, axis=1), full[site].numpy())
        assert np.array_equal(r.read(), full[site].numpy())


def test_reader_computes_what_is_missing(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    load = Loader(engine)
    r = cache.reader(load, TEXTS, "resid")
    assert load.calls == 1 and np.array_equal(r.read(), _by_unit(engine, TEXTS, ("resid",))["resid"].numpy())


def test_corrupt_bytes_are_quarantined_and_recomputed(tmp_path, engine):
    cache = ActivationCache(tmp_path, "model-a")
    good = cache.get(Loader(engine), TEXTS, ("heads",))["heads"]
    (shard,) = _shards(cache)
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    start, _ = json.loads(bytes(data[8 : 8 + n]))["heads"]["data_offsets"]
    data[8 + n + start + 5] ^= 0xFF  # a flipped byte inside the heads tensor; the header is intact
    shard.write_bytes(bytes(data))
    load = Loader(engine)
    with pytest.warns(UserWarning, match="corrupt"):
        r = ActivationCache(tmp_path, "model-a").reader(load, TEXTS, "heads")
    assert load.calls == 1 and torch.equal(torch.from_numpy(r.read()), good)
    assert shard.with_suffix(".safetensors.bad").exists()
