"""Fixtures for pipeline tests (helpers and the test-only interventions live in pipeline_helpers)."""

from __future__ import annotations

import json

import pytest
from pipeline_helpers import TOY_SUITE, Counter, ToyEnv, write_toy_data


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
