"""Shared fixtures.

* Every test runs with genies' data/store/cache directories in a temporary folder (never ~/.cache),
  except converted models (``GENIES_MODELS_DIR``), which are shared so SmolLM2 is converted once.
* ``shared_dir`` points at ``../shared`` (or ``$GENIES_SHARED_DIR``); tests needing it skip with a
  printed reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GENIES_MODELS_DIR", str(Path.home() / ".cache" / "genies" / "models"))


def _shared() -> Path:
    return Path(os.environ.get("GENIES_SHARED_DIR", REPO.parent / "shared")).resolve()


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    base = tmp_path_factory.mktemp("genies-home")
    monkeypatch.setenv("GENIES_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("GENIES_STORE_DIR", str(base / "store"))
    monkeypatch.setenv("GENIES_DATA_DIR", str(base / "data"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = _shared()
    if not d.is_dir():
        pytest.skip(f"shared material not found at {d} (set GENIES_SHARED_DIR)")
    return d


@pytest.fixture(scope="session")
def shared_file(shared_dir):
    """``shared_file(name)``: the path of a file in ../shared, or skip with a printed reason."""

    def get(name: str) -> Path:
        p = shared_dir / name
        if not p.is_file():
            pytest.skip(f"{name} not found at {p}")
        return p

    return get


@pytest.fixture(scope="session")
def datasets_tarball(shared_file) -> Path:
    return shared_file("genies-datasets.tar.gz")


@pytest.fixture(scope="session")
def data_dir(datasets_tarball, tmp_path_factory) -> Path:
    """A data store with the official datasets imported once per test session."""
    from genies.data.store import import_data

    d = tmp_path_factory.mktemp("official-data")
    import_data(str(datasets_tarball), data_dir=d)
    return d


@pytest.fixture
def use_data_dir(data_dir, monkeypatch) -> Path:
    """Make the imported official store the default data dir for this test."""
    monkeypatch.setenv("GENIES_DATA_DIR", str(data_dir))
    return data_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random LLaMA (GQA) + byte-level tokenizer in a local HF folder."""
    from genies.testing import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory) -> Path:
    """examples/plugin-package installed for real (``pip install --target``, with its dist-info, so
    its ``genies.interventions`` entry point is found as a user's install is): the target folder."""
    import subprocess
    import sys

    target = tmp_path_factory.mktemp("plugin-site")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-index", "--target", str(target), str(REPO / "examples" / "plugin-package")]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"pip could not install the example plug-in: {done.stderr[-2000:]}")
    assert list(target.glob("genies_length_plugin-*.dist-info"))
    return target
