"""Load a model by name, convert GGUF weights once, and identify weights cheaply for cache keys.

* GGUF sources (registry aliases such as ``smollm2-135m`` or a local ``.gguf``) are dequantised by
  transformers once and saved as a safetensors HF folder under ``genies.paths.models_dir()``; the
  folder is written to a temporary directory and renamed into place under a file lock, so a crash
  or a concurrent process never leaves a half-written model behind. Later loads take seconds.
* ``model_identity`` is the hash of the weight files ``load_model`` loads — for a GGUF source the
  converted folder (converted first if needed), never the GGUF itself, so a damaged converted folder
  is never taken for the good one. The folder is hashed once: per-file hashes and stat signatures are
  kept in a sidecar beside a converted folder (``<name>.genies-weights.json``; the stat-keyed hash
  cache for other folders) and a file is re-read only when its stat changes. It never loads tensors.
* ``trust_remote_code`` is off unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genies.errors import ConfigError, ModelError
from genies.hashing import cached_sha256, folder_sha256
from genies.io import atomic_write_json
from genies.models.registry import WEIGHT_PATTERNS, ResolvedName, has_weights, resolve_name

if TYPE_CHECKING:
    import torch

CONVERSION_FILE = "genies_conversion.json"
_MAX_LENGTH_SENTINEL = 10**12  # tokenizers without a limit report 1e30


@dataclass
class LoadedModel:
    """A model ready for scoring: weights, tokenizer and what identifies them."""

    name: str
    model: Any
    tokenizer: Any
    identity: dict
    device: torch.device
    dtype: torch.dtype
    max_length: int
    kind: str = "causal_lm"
    info: dict = field(default_factory=dict)  # load time, path, conversion time (for reports)


# ---------------------------------------------------------------- hashing

WEIGHTS_SIDECAR_SUFFIX = ".genies-weights.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, remembered by its stat signature so a large file is read once."""
    return cached_sha256(path)


def weight_files(folder: Path) -> list[Path]:
    return sorted({p for pat in WEIGHT_PATTERNS for p in folder.glob(pat)})


def weights_sidecar(folder: Path) -> Path:
    """Where a converted folder's weight hashes are kept: beside the folder."""
    return folder.parent / f"{folder.name}{WEIGHTS_SIDECAR_SUFFIX}"


def folder_weights_sha256(folder: Path, *, sidecar: Path | None = None) -> str:
    """One hash over every weight file of a folder (names and contents), re-read only when changed."""
    files = weight_files(folder)
    if not files:
        raise ModelError(f"model folder {folder} has no weights (*.safetensors or *.bin)")
    try:
        return folder_sha256(folder, files, sidecar)
    except OSError as exc:
        raise ModelError(f"cannot read the weights in {folder}: {exc.strerror or exc}") from None


def model_identity(name: str) -> dict:
    """``{"name", "path", "weights_sha256"}`` of a model: the hash of the weights it loads from.

    A GGUF source is converted first (once); its identity is the converted folder's weights.
    """
    res = resolve_name(name)
    if res.gguf is not None:
        folder, _ = ensure_converted(res.gguf, res.folder)
        return {
            "name": name,
            "path": str(folder),
            "weights_sha256": folder_weights_sha256(folder, sidecar=weights_sidecar(folder)),
        }
    folder = res.folder if res.folder is not None else _hub_folder(res)
    return {"name": name, "path": str(folder), "weights_sha256": folder_weights_sha256(folder)}


# ---------------------------------------------------------------- hub ids


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hub_folder(res: ResolvedName) -> Path:
    """Local snapshot of a hub id: from the HF cache, or downloaded when online."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(res.hub_id, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any miss means "not in the local cache"
        if _offline():
            raise ModelError(
                f"model {res.name!r} looks like a hub id, is not in the local Hugging Face cache, and hub downloads are off (offline)",
                hint="give a registry alias (genies models list) or a local model folder",
            ) from exc
    try:
        return Path(snapshot_download(res.hub_id))
    except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: all one message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot download model {res.name!r} from the hub: {msg}", hint="use a local model folder"
        ) from exc


# ---------------------------------------------------------------- GGUF conversion


def prepare(name: str) -> tuple[Path, float | None]:
    """Make sure ``name`` is loadable from a local HF folder; return (folder, seconds spent converting or None)."""
    res = resolve_name(name)
    if res.gguf is not None:
        return ensure_converted(res.gguf, res.folder)
    if res.folder is not None:
        return res.folder, None
    return _hub_folder(res), None


def is_prepared(folder: Path) -> bool:
    return (folder / CONVERSION_FILE).is_file() and has_weights(folder)


def ensure_converted(gguf: Path, folder: Path) -> tuple[Path, float | None]:
    """Convert ``gguf`` into ``folder`` once (locked, atomic); return (folder, conversion seconds or None).

    A models folder that cannot be written (a file, a path under /proc, no space) is a ModelError.
    """
    if is_prepared(folder):
        return folder, None
    try:
        return _convert_locked(gguf, folder)
    except OSError as exc:
        blocker = next((p for p in folder.parents if p.exists()), None)
        reason = f"{blocker} is a file" if blocker and not blocker.is_dir() else exc.strerror or str(exc)
        raise ModelError(
            f"cannot write the converted model to {folder}: {reason}",
            hint="set GENIES_MODELS_DIR to a writable folder",
        ) from None


def _convert_locked(gguf: Path, folder: Path) -> tuple[Path, float | None]:
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if is_prepared(folder):  # another process converted it while we waited
            return folder, None
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
        try:
            _convert_gguf(gguf, tmp)
            for f in tmp.iterdir():  # mkdtemp/mkstemp create owner-only files; a model folder is shareable
                f.chmod(0o644)
            tmp.chmod(0o755)
            if folder.exists():  # a stale, incomplete folder (no conversion marker)
                shutil.rmtree(folder)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder, time.perf_counter() - t0


def _load_gguf(gguf: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:  # noqa: BLE001 - gguf/transformers raise many types for a bad file
        raise ModelError(f"cannot read GGUF file {gguf}: {_first_line(exc)}") from exc
    return model, tok


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF with transformers and save it as fp32 safetensors + tokenizer."""
    import transformers

    model, tok = _load_gguf(gguf)
    # transformers refuses to save GGUF-loaded models; the weights are plain dequantised fp32
    # tensors by now, so dropping the quantizer and its config entry makes them an ordinary model.
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.config.__dict__.pop("quantization_config", None)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    if not has_weights(out):
        raise ModelError(f"converting {gguf} wrote no weights")
    atomic_write_json(
        out / CONVERSION_FILE,
        {
            "source": str(gguf),
            "source_sha256": file_sha256(gguf),
            "transformers": transformers.__version__,
            "dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )


# ---------------------------------------------------------------- loading


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(
                f"device {device!r} requested but CUDA is not available", hint="use --device cpu"
            )
        return torch.device(device)
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}; use cpu, cuda or auto")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    import torch

    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return names[dtype]


ATTN_IMPLEMENTATION = (
    "sdpa"  # the kernel family of every forward: the model's own and the engine's tree attention
)


def compute_settings(device: str, dtype: str | None) -> dict[str, str]:
    """How the model will run, as it enters cache keys, known before loading it.

    Numbers can differ between devices, dtypes and attention implementations, so every record's
    model identity holds these keys: ``device_type``, ``dtype`` and ``attn_implementation``
    (``load_model`` loads every model with it; the forward engine's tree attention runs the same
    ``scaled_dot_product_attention`` kernels). Computed without loading weights, so a fully cached run
    loads no model.
    """
    dev = resolve_device(device)
    return {
        "device_type": dev.type,
        "dtype": str(resolve_dtype(dtype, dev)).removeprefix("torch."),
        "attn_implementation": ATTN_IMPLEMENTATION,
    }


def model_max_length(tokenizer, config) -> int:
    """The tokenizer's limit, or the model's position limit when the tokenizer reports the 1e30 sentinel."""
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _MAX_LENGTH_SENTINEL:
        return limit
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return _MAX_LENGTH_SENTINEL


def _tokenizer_source(name: str) -> tuple[str, dict[str, Any]]:
    """Where to read a model's tokenizer and config without its weights (a GGUF not yet converted
    is read directly; its converted folder holds the same tokenizer)."""
    res = resolve_name(name)
    if res.gguf is not None and not is_prepared(res.folder):
        return str(res.gguf.parent), {"gguf_file": res.gguf.name}
    folder = res.folder if res.folder is not None else _hub_folder(res)
    return str(folder), {}


@functools.lru_cache(maxsize=8)
def load_tokenizer(name: str):
    """The tokenizer ``load_model(name)`` would use (pad token set as there), without loading weights."""
    from transformers import AutoTokenizer

    source, kwargs = _tokenizer_source(name)
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - tokenizer files come in many broken ways
        raise ModelError(f"cannot load the tokenizer of {name!r} from {source}: {_first_line(exc)}") from exc
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


@functools.lru_cache(maxsize=8)
def max_length(name: str) -> int:
    """The context length ``load_model(name).max_length`` will have, without loading weights."""
    from transformers import AutoConfig

    source, kwargs = _tokenizer_source(name)
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot read the config of {name!r} from {source}: {_first_line(exc)}") from exc
    return model_max_length(load_tokenizer(name), getattr(config, "text_config", None) or config)


def load_model(
    name: str,
    *,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
) -> LoadedModel:
    """Load a causal LM (or, for encoder aliases, an encoder) and its tokenizer, ready for inference."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    res = resolve_name(name)
    info: dict[str, Any] = {}
    folder, conv_s = prepare(name)
    if conv_s is not None:
        info["conversion_s"] = round(conv_s, 2)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if res.kind == "causal_lm":
        kwargs["attn_implementation"] = ATTN_IMPLEMENTATION
    if load_in_4bit:
        if dev.type != "cuda":
            raise ModelError("4-bit loading needs a CUDA device", hint="drop --load-in-4bit on CPU")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ModelError(
                "4-bit loading needs bitsandbytes, which is not installed", hint="pip install bitsandbytes"
            ) from exc
        kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
        kwargs["device_map"] = {"": dev.index or 0}
    t0 = time.perf_counter()
    cls = AutoModel if res.kind == "encoder" else AutoModelForCausalLM
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        model = cls.from_pretrained(str(folder), **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - config/weights errors come in many types
        raise ModelError(f"cannot load model {name!r} from {folder}: {_first_line(exc)}") from exc
    if not load_in_4bit:
        model.to(dev)
    model.eval()
    model.requires_grad_(False)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token  # as upstream: pad with EOS when the tokenizer has no pad token
    info["load_s"] = round(time.perf_counter() - t0, 2)
    info["path"] = str(folder)
    identity = model_identity(name)
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tok,
        identity=identity,
        device=dev,
        dtype=torch_dtype,
        max_length=model_max_length(tok, getattr(model.config, "text_config", None) or model.config),
        kind=res.kind,
        info=info,
    )
