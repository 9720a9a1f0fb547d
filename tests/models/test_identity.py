"""Model identity = the hash of the weights actually loaded, kept in a sidecar, re-checked on change."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from genies import hashing
from genies.models.loading import folder_weights_sha256, model_identity, weights_sidecar


@pytest.fixture
def copy(tiny_model_dir, tmp_path):
    d = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, d)
    return d


def _flip_a_mantissa_bit(path):
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01  # a low mantissa bit of the last float32 weight
    path.write_bytes(bytes(data))


def test_sidecar_is_written_beside_the_folder_and_files_are_read_once(copy, monkeypatch):
    sidecar = weights_sidecar(copy)
    assert sidecar.parent == copy.parent
    first = folder_weights_sha256(copy, sidecar=sidecar)
    doc = json.loads(sidecar.read_text())
    assert doc["sha256"] == first and set(doc["files"]) == {"model.safetensors"}
    reads = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: reads.append(p) or real(p))
    assert folder_weights_sha256(copy, sidecar=sidecar) == first and reads == []


def test_a_changed_weight_file_is_rehashed_even_with_its_mtime_restored(copy):
    sidecar = weights_sidecar(copy)
    first = folder_weights_sha256(copy, sidecar=sidecar)
    weights = copy / "model.safetensors"
    st = weights.stat()
    _flip_a_mantissa_bit(weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: ctime still moves
    second = folder_weights_sha256(copy, sidecar=sidecar)
    assert second != first
    assert json.loads(sidecar.read_text())["sha256"] == second


def test_identity_is_the_hash_of_the_loaded_folder(copy):
    ident = model_identity(str(copy))
    assert ident["weights_sha256"] == folder_weights_sha256(copy)
    assert ident["path"] == str(copy.resolve())


@pytest.mark.slow
def test_gguf_alias_is_identified_by_its_converted_folder():
    from genies.errors import GeniesError
    from genies.models.loading import file_sha256
    from genies.models.registry import resolve_name

    try:
        res = resolve_name("smollm2-135m")
        ident = model_identity("smollm2-135m")
    except GeniesError as exc:
        pytest.skip(f"smollm2-135m is not available: {exc}")
    folder = res.folder
    assert ident["path"] == str(folder)
    assert ident["weights_sha256"] == folder_weights_sha256(folder)  # the weights load_model loads
    assert ident["weights_sha256"] != file_sha256(res.gguf)  # not the GGUF they were converted from
    assert json.loads(weights_sidecar(folder).read_text())["sha256"] == ident["weights_sha256"]
