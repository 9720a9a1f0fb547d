"""Tiny random models of the other architectures the forward engine supports."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    """Gemma-3 text model: sliding window 8 on two of three layers, heads x head_dim (64) != hidden (32)."""
    from genies.testing import make_tiny_gemma3

    return make_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory) -> Path:
    from genies.testing import make_tiny_neox

    return make_tiny_neox(tmp_path_factory.mktemp("tiny-neox"))
