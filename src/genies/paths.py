"""Where genies keeps data, converted models and results (overridable by environment variables)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of genies' caches: ``$GENIES_CACHE_DIR`` or ``~/.cache/genies``."""
    env = os.environ.get("GENIES_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genies"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Dataset store: explicit override, else ``$GENIES_DATA_DIR``, else ``~/.cache/genies/data``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("GENIES_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genies" / "data"


def models_dir() -> Path:
    """Converted model folders (GGUF → safetensors): ``$GENIES_MODELS_DIR`` or cache_dir()/models."""
    env = os.environ.get("GENIES_MODELS_DIR")
    return Path(env).expanduser() if env else cache_dir() / "models"


def store_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Result store (trained states, evaluations): override, ``$GENIES_STORE_DIR`` or cache_dir()/store."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("GENIES_STORE_DIR")
    return Path(env).expanduser() if env else cache_dir() / "store"
