"""`genies compare` and `genies report` from the command line: output, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from genies.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))
from report_helpers import probs, write_result  # noqa: E402

SHIFTS = [("s1", "t1", "skill"), ("s2", "t2", "context")]


@pytest.fixture
def two_results(tmp_path):
    rng = np.random.default_rng(0)
    store = tmp_path / "store"
    base = {t: probs(rng, 80, 0.6) for _, t, _ in SHIFTS}
    ttc = {t: probs(rng, 80, 0.9) for _, t, _ in SHIFTS}
    gen_a = {t: probs(rng, 80, 0.55) for _, t, _ in SHIFTS}
    gen_b = {t: [min(0.99, p + 0.3) for p in gen_a[t]] for t in gen_a}
    a = write_result(tmp_path / "r", store, "iv_a", SHIFTS, gen_a, base, ttc)
    b = write_result(tmp_path / "r", store, "iv_b", SHIFTS, gen_b, base, ttc)
    return a, b, store


def test_compare_table_and_json(two_results, capsys):
    a, b, store = two_results
    assert main(["compare", str(a), str(b), "--store", str(store), "--n-boot", "200"]) == 0
    out = capsys.readouterr().out
    assert "s1 → t1" in out and "Holm" in out and "permutation" in out
    assert main(["compare", str(a), str(b), "--store", str(store), "--json", "--n-boot", "200"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "comparison" and len(doc["shifts"]) == 2
    assert all(s["acc_diff"] > 0 for s in doc["shifts"])


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{tmp}/nope.json", "{b}"], "no such results file or folder"),
        (["{text}", "{b}"], "is not a genies suite result"),
        (["{a}", "{b}", "--store", "{tmp}/empty"], "is not a valid record"),
        (["{a}", "{b}", "--n-boot", "0"], "Invalid value"),
        (["{tmp}", "{b}"], "holds 2 results"),
    ],
)
def test_compare_bad_input_is_one_line(two_results, tmp_path, capsys, args, says):
    a, b, store = two_results
    text = tmp_path / "notes.json"
    text.write_text("hello", encoding="utf-8")
    fill = {"tmp": str(tmp_path), "a": str(a), "b": str(b), "text": str(text)}
    argv = ["compare", *(x.format(**fill) for x in args)]
    if "--store" not in argv:
        argv += ["--store", str(store)]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc in (1, 2) and len(err.splitlines()) == 1 and says in err, err
    assert "Traceback" not in err


def test_report_cli_html_and_bad_input(two_results, tmp_path, capsys):
    a, b, store = two_results
    out = tmp_path / "rep.html"
    assert main(["report", str(a), str(b), "--store", str(store), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "Paired comparisons" in html and "data:image/png;base64," in html
    capsys.readouterr()
    for argv, says in (
        (["report", str(a), "-o", str(tmp_path)], "is a folder"),
        (["report", str(a), "-o", str(tmp_path / "no" / "r.html")], "does not exist"),
        (["report", str(a), "--format", "pdf", "-o", str(out)], "--format must be html or md"),
        (["report", str(tmp_path / "nope.json"), "-o", str(out)], "no such results file or folder"),
    ):
        rc = main([*argv, "--store", str(store)])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and len(err.splitlines()) == 1 and says in err, err
