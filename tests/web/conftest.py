"""Fixtures of the browser tests: artefact folder, measured numbers printed at the end of the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Numbers the browser tests measure (start-up, page load, RSS); printed in the terminal summary.
METRICS: dict[str, float | str] = {}


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``test-artifacts/browser`` in the repository (git-ignored), or ``$GENIES_TEST_ARTIFACTS``."""
    d = Path(os.environ.get("GENIES_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def metrics(artifacts_dir):
    yield METRICS
    if METRICS:
        (artifacts_dir / "metrics.json").write_text(json.dumps(METRICS, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter):
    if METRICS:
        terminalreporter.section("genies browse: measured in the browser tests")
        for k, v in METRICS.items():
            terminalreporter.write_line(f"{k}: {v}")
