"""The data rules (upstream-reference §1.3, recommended variant) as reported problems."""

from __future__ import annotations

import json

import pytest
from datakit import records

from genies.data import check_distribution, validate_records
from genies.data.validation import check_prompts, check_split_file, overlap_counts


def _one(rec: dict) -> list[str]:
    return [p.reason for p in validate_records([rec], file="f.json")]


def test_valid_records_have_no_problems():
    assert validate_records(records(5, 4), file="f.json") == []
    # varying response counts are allowed (the recommended variant of rule 4), ints too
    mixed = records(2, 2) + records(2, 4) + [{"prompt": "p", "responses": {"a": 1, "b": 0}}]
    assert validate_records(mixed) == []


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        ({"responses": {"a": 1.0, "b": 0.0}}, "missing 'prompt'"),
        ({"prompt": 3, "responses": {"a": 1.0, "b": 0.0}}, "'prompt' must be a string, not a number"),
        ({"prompt": "  \n", "responses": {"a": 1.0, "b": 0.0}}, "'prompt' is empty"),
        ({"prompt": "p"}, "missing 'responses'"),
        ({"prompt": "p", "responses": ["a", "b"]}, "'responses' must be an object"),
        ({"prompt": "p", "responses": {}}, "'responses' is empty"),
        ({"prompt": "p", "responses": {"a": 1.0, "b": 1.0, "c": 0.0}}, "2 responses have score 1"),
        ({"prompt": "p", "responses": {"a": 0.0, "b": 0.0}}, "no preferred response"),
        ({"prompt": "p", "responses": {"a": 1.0}}, "no dispreferred response"),
        ({"prompt": "p", "responses": {"a": 1.0, "b": 0.5}}, "score 0.5 of response 'b' is not 0 or 1"),
        ({"prompt": "p", "responses": {"a": 1.0, "b": "0"}}, "is a string"),
        ({"prompt": "p", "responses": {"a": True, "b": 0.0}}, "is a boolean"),
        ({"prompt": "p", "responses": {"a": 1.0, "b": None}}, "is null"),
        ({"prompt": "p", "responses": {"a": 1.0, "b": float("nan")}}, "is not 0 or 1"),
        ("just text", "an example must be a JSON object, not a string"),
    ],
)
def test_each_record_rule(rec, reason):
    reasons = _one(rec)
    assert len(reasons) == 1 and reason in reasons[0], reasons


def test_problems_name_file_and_index():
    recs = records(4)
    recs[2]["responses"] = {"a": 0.0, "b": 0.0}
    del recs[3]["prompt"]
    problems = validate_records(recs, file="d/train.json")
    assert [(p.file, p.index) for p in problems] == [("d/train.json", 2), ("d/train.json", 3)]
    assert str(problems[0]) == "d/train.json: example 2: no preferred response (no score 1)"
    # every broken rule of one example is reported
    assert len(_one({"responses": []})) == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [({"a": 1}, "a split must be a JSON list of examples, not an object"), ([], "empty split")],
)
def test_split_level_problems(data, reason):
    (problem,) = validate_records(data, file="t.json")
    assert problem.index is None and reason in problem.reason


def test_split_file_problems(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text('[{"prompt": "p", "responses": {"a": 1.0 "b": 0.0}}]')
    recs, problems = check_split_file(bad)
    assert recs is None and problems[0].reason == "invalid JSON at line 1 column 41: Expecting ',' delimiter"
    recs, problems = check_split_file(tmp_path / "missing.json")
    assert recs is None and problems[0].reason == "file not found"
    good = tmp_path / "test.json"
    good.write_text(json.dumps(records(3)))
    recs, problems = check_split_file(good)
    assert problems == [] and len(recs) == 3


def test_degenerate_prompts_are_errors_but_long_shared_prompts_only_warnings():
    tiny = [{"prompt": "B", "responses": {f"r{i}": 1.0, "other": 0.0}} for i in range(5)]
    (problem,) = check_prompts(tiny, "train.json")
    assert problem.severity == "error"
    assert problem.reason == "degenerate prompts: 5/5 examples share the prompt 'B'"
    shared = [dict(r, prompt="Answer the following biology question.\n") for r in tiny]
    (warning,) = check_prompts(shared, "train.json")
    assert warning.severity == "warning" and warning.reason == "5/5 examples share one prompt"
    # a short prompt used by only half the examples, or by one example only, is fine
    assert check_prompts(tiny[:2] + records(2), "f") == []
    assert check_prompts(tiny[:1], "f") == []


def test_overlap_counts_exact_and_prompt_only():
    train = records(5)
    test = [dict(train[0]), dict(train[1], responses={"new": 1.0, "other": 0.0})] + records(3, tag="y")
    # response order does not matter for an exact duplicate
    test[0]["responses"] = dict(reversed(list(train[0]["responses"].items())))
    assert overlap_counts(train, test) == (1, 1)


def test_check_distribution_separates_errors_sanity_and_warnings(tmp_path):
    d = tmp_path / "demo"
    d.mkdir()
    (d / "train.json").write_text(json.dumps(records(4)))
    (d / "test.json").write_text(json.dumps(records(2)))  # both test examples duplicate train ones
    report = check_distribution(d)
    assert report.status == "ok" and report.errors == report.sanity == []
    assert report.overlap == (2, 0)
    assert [str(w) for w in report.warnings] == [f"{d}: 2/2 test examples duplicate a train example"]

    (d / "test.json").write_text(json.dumps([{"prompt": "B", "responses": {"a": 1.0, "b": 0.0}}] * 3))
    report = check_distribution(d)
    assert report.errors == [] and len(report.sanity) == 1
    assert report.status == "invalid: test.json: degenerate prompts: 3/3 examples share the prompt 'B'"

    (d / "test.json").unlink()
    report = check_distribution(d, label="distributions/demo")
    assert report.status == "invalid: test.json: file not found" and report.records == {}
    assert str(report.errors[0]) == "distributions/demo/test.json: file not found"
