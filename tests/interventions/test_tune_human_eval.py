"""human_eval through piped input: seeded A/B order (recorded), answers → p, stored as an evaluation."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from genies.data.schema import Pair
from genies.errors import GeniesError
from genies.interventions.human_eval import correct_is_a, label_pairs
from genies.interventions.registry import get_intervention


def _pairs(n):
    return [Pair(f"{i}/1", f"prompt {i}", f"good {i}", f"bad {i}", i) for i in range(n)]


def test_order_is_seeded_and_answers_map_to_p():
    pairs = _pairs(40)
    order = [correct_is_a(0, p) for p in pairs]
    assert 10 < sum(order) < 30 and order == [correct_is_a(0, p) for p in pairs]
    assert order != [correct_is_a(1, p) for p in pairs]
    answers = (
        "\n".join("A" if a else "B" for a in order[:20])
        + "\n"
        + "x\nP\n"
        + "\n".join("B" if a else "A" for a in order[21:])
    )
    shown = io.StringIO()
    p, labels, given = label_pairs(pairs, 0, inp=io.StringIO(answers + "\n"), out=shown)
    assert list(p[:20]) == [1.0] * 20 and p[20] == 0.5 and list(p[21:]) == [0.0] * 19
    assert labels == ["A" if a else "B" for a in order] and given[20] == "P"
    assert "please answer" in shown.getvalue() and "good 3" in shown.getvalue()


def test_eof_and_quit_store_nothing():
    it = get_intervention("human_eval")
    cfg = it.make_config({})
    with pytest.raises(GeniesError, match="input ended after 1 of 3"):
        label_pairs(_pairs(3), 0, inp=io.StringIO("A\n"), out=io.StringIO())
    with pytest.raises(GeniesError, match="stopped"):
        label_pairs(_pairs(3), 0, inp=io.StringIO("q\n"), out=io.StringIO())
    assert it.requirements(cfg).score_model is False


def test_genies_run_stores_judgements(use_data_dir, tiny_model_dir, tmp_path, monkeypatch, capsys):
    from genies.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("A\n" * 200))
    store = tmp_path / "store"
    args = ["run", "-i", "human_eval", "--suite", "test", "--limit", "2", "--model", str(tiny_model_dir),
            "--device", "cpu", "--store", str(store), "--out", str(tmp_path / "out"), "--no-progress",
            "--set", "intervention.annotator=tester"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    recs = [json.loads(p.read_text()) for p in store.rglob("evaluations/*/*.json")]
    mine = [r for r in recs if r["intervention"] == "human_eval" and r["n"] > 0]
    assert mine  # (some evaluations may be empty: the tiny model's 512 tokens drop long examples)
    for r in mine:
        want = [1.0 if lab == "A" else 0.0 for lab in r["info"]["correct_label"]]
        assert r["p_correct"] == want and r["info"]["annotator"] == "tester"
        assert np.isclose(r["metrics"]["accuracy"], np.mean(want))
