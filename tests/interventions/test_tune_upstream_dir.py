"""`genies run --intervention DIR`: examples/upstream-dir's train.py / eval.py run as subprocesses with
upstream's argument contract, cached by the directory's contents; a failing script is reported with
its stderr tail and stored results are kept; aggregate-only reports are refused, never imputed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genies.errors import GeniesError
from genies.interventions.upstream_dir import _probabilities, dir_sha256

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "upstream-dir"


def _run(main, d, tiny, store, out, *extra):
    return main(["run", "--intervention", str(d), "--suite", "test", "--limit", "10", "--model", str(tiny),
                 "--device", "cpu", "--store", str(store), "--out", str(out), "--no-progress", *extra])  # fmt: skip


def test_upstream_dir_end_to_end(use_data_dir, tiny_model_dir, tmp_path, capsys):
    from genies.cli import main

    d = tmp_path / "my-method"
    shutil.copytree(EXAMPLE, d)
    store = tmp_path / "store"
    assert _run(main, d, tiny_model_dir, store, tmp_path / "o1") == 0, capsys.readouterr().err
    recs = [json.loads(p.read_text()) for p in store.rglob("evaluations/*/*.json")]
    mine = [r for r in recs if r["intervention"] == "upstream_dir" and r["n"] > 0]
    assert mine and all("eval_accuracy" in r["info"]["reported"] for r in mine)
    for r in mine:  # the script's own accuracy is the one genies computes from its probabilities
        assert np.isclose(r["info"]["reported"]["eval_accuracy"], r["metrics"]["accuracy"])
    stored = {p.name for p in store.rglob("evaluations/*/*.json")}
    capsys.readouterr()
    assert _run(main, d, tiny_model_dir, store, tmp_path / "o2") == 0
    assert {p.name for p in store.rglob("evaluations/*/*.json")} == stored  # cached: nothing new

    before = dir_sha256(d)
    (d / "train.py").write_text((d / "train.py").read_text() + "\n# edited\n")
    assert dir_sha256(d) != before
    code = _run(
        main, d, tiny_model_dir, store, tmp_path / "o3", "--set", "intervention.train_kwargs={fail=true}"
    )
    err = capsys.readouterr().err
    assert code != 0 and "exited with status 3" in err and "asked to fail" in err and "Traceback" not in err
    assert stored <= {p.name for p in store.rglob("evaluations/*/*.json")}


def test_not_a_directory_and_aggregate_only(tmp_path, capsys):
    from genies.cli import main

    assert main(["run", "--intervention", str(tmp_path / "nope/"), "--suite", "test"]) != 0
    assert "not an upstream-style intervention directory" in capsys.readouterr().err
    with pytest.raises(GeniesError, match="nothing is imputed"):
        _probabilities({"eval_accuracy": 0.7}, 3, tmp_path)
    with pytest.raises(GeniesError, match="expected 3"):
        _probabilities({"eval_accuracy": 0.7, "eval_probabilities": [0.1, 0.2]}, 3, tmp_path)
    np.testing.assert_allclose(
        _probabilities({"eval_accuracy": 1, "eval_probabilities": [[0.8, 0.2]]}, 1, tmp_path), [0.8]
    )
