"""Fixtures for the paper-results tests: the published tarball, unpacked and imported once per session."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def published_tarball(shared_file) -> Path:
    return shared_file("genies-published-results.tar.gz")


@pytest.fixture(scope="session")
def published_dir(published_tarball, tmp_path_factory) -> Path:
    """The tarball unpacked (results/ folder): ground truth for the comparisons."""
    d = tmp_path_factory.mktemp("published")
    with tarfile.open(published_tarball) as tar:
        tar.extractall(d, filter="data")
    return d / "results"


@pytest.fixture(scope="session")
def upstream_import(published_tarball, tmp_path_factory):
    """The paper's results imported from the tarball into a session store: (store dir, summary)."""
    from genies.results.upstream import import_upstream

    store = tmp_path_factory.mktemp("paper-store")
    summary = import_upstream(published_tarball, store=store)
    return store, summary
