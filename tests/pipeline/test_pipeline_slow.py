"""`genies run` with the real SmolLM2-135M (slow: minutes on a CPU)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from genies.cli import main
from genies.records import UPSTREAM_CSV_COLUMNS, EvaluationRecord

pytestmark = pytest.mark.slow


@pytest.fixture
def smollm2():
    from genies.errors import GeniesError
    from genies.models.loading import model_identity

    try:
        model_identity("smollm2-135m")
    except GeniesError as exc:
        pytest.skip(f"smollm2-135m is not available: {exc}")
    return "smollm2-135m"


def test_zero_shot_on_the_test_suite(use_data_dir, smollm2, tmp_path, capsys):
    store, out = tmp_path / "store", tmp_path / "out"
    args = [
        "run",
        "-i",
        "zero_shot",
        "--suite",
        "test",
        "--limit",
        "50",
        "--store",
        str(store),
        "--out",
        str(out),
    ]
    assert main([*args, "--no-progress"]) == 0
    err = capsys.readouterr().err
    df = pd.read_csv(out / "test.csv")
    assert tuple(df.columns) == UPSTREAM_CSV_COLUMNS and len(df) == 1
    row = df.iloc[0]
    assert (row.source, row.target) == ("us_history_textbook", "us_history_fiction")
    records = {
        (r.eval_distribution, r.train_distribution): r
        for r in (
            EvaluationRecord.model_validate(json.loads(p.read_text()))
            for p in store.rglob("evaluations/*/*.json")
        )
    }
    assert len(records) == 2  # zero_shot ignores training data: one evaluation per distribution
    gen = next(r for (e, t), r in records.items() if e == "us_history_fiction")
    src = next(r for (e, t), r in records.items() if e == "us_history_textbook")
    assert gen.n == src.n == 50 and gen.model["name"] == "smollm2-135m"
    assert row.generalization_accuracy == pytest.approx(gen.metrics["accuracy"])
    assert row.source_ID_accuracy == pytest.approx(src.metrics["accuracy"])
    # zero_shot ignores the training data: baseline, target-tuned and generalization agree.
    assert row.baseline_accuracy == pytest.approx(row.generalization_accuracy)
    assert row.target_tuned_capability == pytest.approx(row.generalization_accuracy)
    assert row.differential_elicitation == pytest.approx(0.0)
    assert "forward passes" in err

    assert main([*args, "--no-progress"]) == 0
    again = " ".join(capsys.readouterr().err.split())
    assert re.search(r"evaluations: 0 computed, \d+ reused", again)
    assert "forward passes: 0; model loads: 0" in again
