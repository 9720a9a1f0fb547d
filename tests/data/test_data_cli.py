"""`genies data …` through the real entry point: output, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from datakit import dist_files, good_files, make_tar, records, write_tree

from genies.cli import main


@pytest.mark.parametrize("args", [[], ["import"], ["download"], ["list"], ["show"], ["validate"]])
def test_help_reads_well(args, capsys):
    assert main(["data", *args, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and " data " + " ".join(args) in out and "Traceback" not in out
    if args in (["import"], ["download"], ["list"], ["show"]):
        assert "--data-dir" in out


def test_import_then_list(tmp_path, capsys):
    store = tmp_path / "store"
    assert (
        main(
            [
                "data",
                "import",
                str(make_tar(tmp_path / "d.tar.gz", good_files(), gz=True)),
                "--data-dir",
                str(store),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "imported 2 distributions (8 train / 6 test examples)" in out
        and "1 files not needed were skipped" in out
    )
    assert main(["data", "list", "--data-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "2 distributions (2 ok, 0 invalid) · 8 train / 6 test examples · 12 test pairs" in out
    assert main(["data", "list", "--json", "--data-dir", str(store)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {
        "id": "alpha",
        "status": "ok",
        "train_examples": 4,
        "test_examples": 3,
        "train_pairs": 4,
        "test_pairs": 6,
        "responses_per_example": [2, 3],
        "test_duplicates": 0,
        "test_shared_prompts": 0,
        "notes": [],
    }


def test_list_of_the_official_store(data_dir, capsys):
    assert main(["data", "list", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert (
        "66 distributions (65 ok, 1 invalid) · 45,237 train / 18,996 test examples · 38,992 test pairs" in out
    )
    line = next(row for row in out.splitlines() if "commonsense_qa" in row)
    assert "invalid" in line and "train.json: degenerate prompts" in line


def test_list_of_an_empty_store_says_how_to_import(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no distributions in" in out and "genies data import FILE" in out
    assert main(["data", "list", "--json", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_show_marks_the_preferred_response_and_escapes_markup(tmp_path, capsys):
    train = [{"prompt": "Say [bold]hi[/bold] [red]", "responses": {"[link=x]no[/link]": 0.0, "[i]yes": 1.0}}]
    store = tmp_path / "store"
    write_tree(tmp_path / "src", dist_files("markup", train=train))
    assert main(["data", "import", str(tmp_path / "src"), "--data-dir", str(store)]) == 0
    capsys.readouterr()
    assert main(["data", "show", "markup", "--data-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "Say [bold]hi[/bold] [red]" in out and "[link=x]no[/link]" in out and "[i]yes" in out
    assert "✗ response 0" in out and "✓ response 1" in out and "markup · train · example 1/1" in out
    assert (
        main(["data", "show", "markup", "--split", "test", "-n", "2", "--json", "--data-dir", str(store)])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[1]["preferred"] == "markup-test answer 1.0" and len(rows[1]["responses"]) == 3


def test_show_of_a_degenerate_distribution_warns(data_dir, capsys):
    assert main(["data", "show", "commonsense_qa", "-n", "1", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("warning: distribution 'commonsense_qa' is not usable")
    assert "✓ response 3" in out


def test_show_unknown_id_is_one_line(data_dir, capsys):
    assert main(["data", "show", "rankin_logic", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown distribution 'rankin_logic'; did you mean 'ranking_logic' or ")
    assert len(err.splitlines()) == 1


def test_validate_reports_every_problem_with_file_and_index(tmp_path, capsys):
    recs = records(4)
    recs[1]["responses"] = {"a": 1.0, "b": 1.0}
    recs[3]["responses"]["x"] = 0.5
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(recs))
    assert main(["data", "validate", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"error: {bad}: example 1: 2 responses have score 1; exactly one must be preferred",
        f"error: {bad}: example 3: score 0.5 of response 'x' is not 0 or 1",
    ]
    assert captured.err == f"error: 2 errors, 0 warnings in 1 file ({bad})\n"


def test_validate_warnings_do_not_fail(data_dir, capsys):
    folder = data_dir / "distributions" / "ranking_logic_easy"
    assert main(["data", "validate", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"warning: {folder}: 105/250 test examples duplicate a train example",
        f"valid: 0 errors, 1 warning in 1 distribution ({folder})",
    ]


def test_validate_a_whole_store(data_dir, capsys):
    assert main(["data", "validate", str(data_dir)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.out.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("commonsense_qa" in line for line in errors)
    assert captured.err.startswith("error: 2 errors, ") and "in 66 distributions" in captured.err


def test_validate_bad_paths(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err == f"error: no such file or folder: {tmp_path / 'nope'}\n"
    assert main(["data", "validate", str(tmp_path)]) == 1
    assert "holds no distribution" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("[{")
    assert main(["data", "validate", str(tmp_path / "broken.json")]) == 1
    assert "broken.json: invalid JSON at line 1 column 3" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- issue #9


def _degenerate(n: int) -> list[dict]:
    return [{"prompt": "B", "responses": {f"a{i}": 1, f"b{i}": 0}} for i in range(n)]


def test_import_help_and_behaviour_agree_about_unusable_distributions(tmp_path, capsys):
    """Well-formed but unusable (commonsense_qa-like) → imported with a warning; --strict refuses."""
    assert main(["data", "import", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "only if every file is well-formed" in help_text and "--strict" in help_text
    files = {**good_files(), **dist_files("junk_qa", _degenerate(4), _degenerate(3))}
    tar = make_tar(tmp_path / "d.tar", files)
    store = tmp_path / "store"

    assert main(["data", "import", str(tar), "--data-dir", str(store), "--strict"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing to import") and "degenerate prompts" in err and "\n" not in err
    assert not (store / "distributions").exists()

    assert main(["data", "import", str(tar), "--data-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "imported 3 distributions" in out
    assert "warning: junk_qa was imported but is unusable (train.json: degenerate prompts" in out
    assert main(["data", "list", "--json", "--data-dir", str(store)]) == 0
    status = {r["id"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert status["alpha"] == "ok" and status["junk_qa"].startswith("invalid: ")

    # A file that breaks the record rules fails the import with or without --strict.
    broken = make_tar(tmp_path / "b.tar", {**good_files(), **dist_files("gamma", b"\xff\xfe not json")})
    assert main(["data", "import", str(broken), "--data-dir", str(store)]) == 1
    assert "refusing to import" in capsys.readouterr().err
    assert (store / "distributions" / "junk_qa").is_dir()  # the previous store is intact


@pytest.mark.parametrize("command", [["list"], ["show", "alpha"], ["import", "{tar}"]])
def test_a_file_in_place_of_the_data_store_is_an_error(command, tmp_path, capsys):
    tar = make_tar(tmp_path / "d.tar", good_files())
    blocker = tmp_path / "not-a-store"
    blocker.write_text("x")
    args = [a.replace("{tar}", str(tar)) for a in command]
    assert main(["data", *args, "--data-dir", str(blocker)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {blocker} is a file; the data store must be a folder"
    assert blocker.read_text() == "x"
    # and a file where the store's distributions/ folder belongs
    store = tmp_path / "store"
    store.mkdir()
    (store / "distributions").write_text("y")
    assert main(["data", *args, "--data-dir", str(store)]) == 1
    assert "is a file" in capsys.readouterr().err
    assert (store / "distributions").read_text() == "y"
