"""Fixtures for pipeline tests (helpers and the test-only interventions live in pipeline_helpers)."""

from __future__ import annotations

import json

import pytest
from pipeline_helpers import TOY_SUITE, Counter, ToyEnv, write_toy_data


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path_factory, monkeypatch):
    """Run every pipeline test in a scratch folder, so a default --out never lands in the repo."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def counter():
    Counter.reset()
    yield Counter
    Counter.reset()


@pytest.fixture
def toy(tmp_path, counter) -> ToyEnv:
    data = write_toy_data(tmp_path / "data")
    suite = tmp_path / "toy_suite.json"
    suite.write_text(json.dumps(TOY_SUITE))
    return ToyEnv(tmp_path, data, suite, tmp_path / "store", tmp_path / "out")
