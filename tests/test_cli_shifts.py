"""`genies shifts list|suites` through the real entry point."""

from __future__ import annotations

import json

from genies.cli import main
from genies.shifts import get_suite, list_suites


def test_list_json_matches_the_suite(capsys):
    assert main(["shifts", "list", "--suite", "genies", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == [s.to_json() for s in get_suite("genies")]
    assert out[9]["label"] == "extreme" and out[9]["group"] == "probing"


def test_list_table_has_rows_and_a_count(capsys):
    assert main(["shifts", "list", "--suite", "all-paper"]) == 0
    out = capsys.readouterr().out
    assert "69 rows (56 unique shifts) · 8 categories · 61 distributions" in out
    assert "sycophancy_are_you_sure" in out and "quote_attribution" in out


def test_list_defaults_to_all(capsys):
    assert main(["shifts", "list"]) == 0
    assert "56 shifts · 8 categories · 61 distributions" in capsys.readouterr().out


def test_list_accepts_a_suite_file(tmp_path, capsys):
    p = tmp_path / "mine.json"
    p.write_text(json.dumps([{"source": "a", "target": "b", "target_reference": "c"}]))
    assert main(["shifts", "list", "--suite", str(p), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == {
        "source": "a",
        "target": "b",
        "target_reference": "c",
        "category": "custom",
        "group": None,
        "label": None,
    }


def test_suites_lists_every_suite_with_its_size(capsys):
    assert main(["shifts", "suites", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out] == list_suites()
    assert {r["name"]: r["shifts"] for r in out}["all-paper"] == 69
    assert main(["shifts", "suites"]) == 0
    assert "unwanted_personas" in capsys.readouterr().out


def test_unknown_suite_is_a_one_line_error(capsys):
    assert main(["shifts", "list", "--suite", "genis"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: unknown suite 'genis'; did you mean 'genies'?")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_malformed_suite_file_is_a_one_line_error(tmp_path, capsys):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    assert main(["shifts", "list", "--suite", str(p)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: suite file") and "not valid JSON" in err and err.count("\n") == 1


def test_check_against_the_data_store(tmp_path, capsys):
    assert main(["shifts", "list", "--suite", "test", "--check"]) != 0  # isolated, empty default store
    assert "no distributions in the data store" in capsys.readouterr().err
    store = tmp_path / "store"
    for d in ("us_history_textbook", "us_history"):
        (store / "distributions" / d).mkdir(parents=True)
    assert main(["shifts", "list", "--suite", "test", "--data-dir", str(store)]) != 0
    assert "unknown distribution 'us_history_fiction'" in capsys.readouterr().err
    (store / "distributions" / "us_history_fiction").mkdir()
    assert main(["shifts", "list", "--suite", "test", "--data-dir", str(store), "--json"]) == 0
