"""`genies results import-upstream` and `genies results reproduce-paper` (synthetic trees)."""

from __future__ import annotations

import os
import tarfile

import pandas as pd
import pytest
from upstream_tree import make_tree

from genies.cli import main
from genies.records import UPSTREAM_CSV_COLUMNS
from genies.shifts import get_suite


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and needle in lines[0], err


@pytest.fixture
def genies_tree(tmp_path):
    """A synthetic paper tree covering the 15 GENIES shifts for llama-7b/mms (+ its zero_shot)."""
    shifts = [(s.source, s.target) for s in get_suite("genies")]
    return make_tree(tmp_path / "src", shifts, junk=True)


def test_import_then_reproduce(genies_tree, tmp_path, capsys):
    store, out = tmp_path / "store", tmp_path / "out"
    code, stdout, err = _run(
        capsys, "results", "import-upstream", str(genies_tree.root), "--store", str(store)
    )
    assert code == 0, err
    assert "records imported" in stdout and "skipped files" in stdout and "stale or nested folder" in stdout
    assert "llama-7b" in stdout and "target-tuned capabilities: llama-7b 15" in stdout

    code, stdout, err = _run(capsys, "results", "reproduce-paper", "--out", str(out), "--store", str(store))
    assert code == 0, err
    assert "wrote 2 tables (30 rows)" in stdout  # mms and zero_shot cover GENIES; nothing covers all.csv
    table = pd.read_csv(out / "llama-7b" / "mms" / "GENIES.csv")
    assert tuple(table.columns) == UPSTREAM_CSV_COLUMNS
    suite = get_suite("genies")
    assert list(zip(table.source, table.target, table.target_reference, strict=True)) == [
        (s.source, s.target, s.reference) for s in suite
    ]
    for row in table.itertuples():
        gen = genies_tree.stored(f"evaluations/mms/llama-7b-{row.source}/{row.target}.json")
        base = genies_tree.stored(f"evaluations/zero_shot/llama-7b-{row.source}/{row.target}.json")
        ttc = genies_tree.ttc[("llama-7b", row.target)]["best_intervention_accuracy"]
        assert row.generalization_accuracy == gen
        assert row.baseline_accuracy == base
        assert row.target_tuned_capability == ttc
        assert row.differential_elicitation == (gen - base) / ttc
    assert not (out / "llama-7b" / "mms" / "all.csv").exists()


def test_reproduce_one_suite_uses_the_store_env(genies_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENIES_STORE_DIR", str(tmp_path / "envstore"))
    assert _run(capsys, "results", "import-upstream", str(genies_tree.root), "--no-progress")[0] == 0
    code, stdout, err = _run(
        capsys, "results", "reproduce-paper", "--suite", "genies", "--out", str(tmp_path / "o")
    )
    assert code == 0, err
    assert (tmp_path / "o" / "llama-7b" / "zero_shot" / "GENIES.csv").is_file()


def test_reproduce_all_paper_without_coverage_is_an_error(genies_tree, tmp_path, capsys):
    store = tmp_path / "store"
    assert _run(capsys, "results", "import-upstream", str(genies_tree.root), "--store", str(store))[0] == 0
    code, _, err = _run(
        capsys,
        "results",
        "reproduce-paper",
        "-s",
        "all-paper",
        "-o",
        str(tmp_path / "o"),
        "--store",
        str(store),
    )
    _one_line_error(code, err, "cover no complete paper table")


def test_reproduce_without_import(tmp_path, capsys):
    code, _, err = _run(
        capsys, "results", "reproduce-paper", "--out", str(tmp_path / "o"), "--store", str(tmp_path / "s")
    )
    _one_line_error(code, err, "no imported paper results")
    assert "import-upstream" in err


def test_reproduce_unknown_suite(tmp_path, capsys):
    code, _, err = _run(capsys, "results", "reproduce-paper", "--suite", "all", "--out", str(tmp_path / "o"))
    _one_line_error(code, err, "unknown paper suite 'all'; did you mean 'all-paper'?")
    assert not (tmp_path / "o").exists()


def test_reproduce_out_not_writable(genies_tree, tmp_path, capsys):
    store = tmp_path / "store"
    assert _run(capsys, "results", "import-upstream", str(genies_tree.root), "--store", str(store))[0] == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = _run(
        capsys, "results", "reproduce-paper", "--out", str(blocker / "sub"), "--store", str(store)
    )
    _one_line_error(code, err, "cannot write to")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores a read-only mode")
def test_reproduce_out_read_only_dir(genies_tree, tmp_path, capsys):
    store = tmp_path / "store"
    assert _run(capsys, "results", "import-upstream", str(genies_tree.root), "--store", str(store))[0] == 0
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        code, _, err = _run(capsys, "results", "reproduce-paper", "--out", str(out), "--store", str(store))
        _one_line_error(code, err, "cannot write to")
    finally:
        out.chmod(0o755)


def test_import_bad_paths(tmp_path, capsys):
    code, _, err = _run(
        capsys, "results", "import-upstream", str(tmp_path / "missing"), "--store", str(tmp_path / "s")
    )
    _one_line_error(code, err, "no such file or directory")
    tarball = tmp_path / "data.tar.gz"
    (tmp_path / "distributions").mkdir()
    (tmp_path / "distributions" / "x.json").write_text("[]")
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tmp_path / "distributions", arcname="distributions")
    code, _, err = _run(capsys, "results", "import-upstream", str(tarball), "--store", str(tmp_path / "s"))
    _one_line_error(code, err, "holds no results/evaluations folder")


def test_reproduce_out_permission_denied(genies_tree, tmp_path, capsys, monkeypatch):
    """Same as the read-only test above, for root (which ignores modes): the write probe is refused."""
    import genies.results.upstream as up

    store = tmp_path / "store"
    assert _run(capsys, "results", "import-upstream", str(genies_tree.root), "--store", str(store))[0] == 0

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(up.tempfile, "NamedTemporaryFile", refuse)
    code, _, err = _run(
        capsys, "results", "reproduce-paper", "--out", str(tmp_path / "o"), "--store", str(store)
    )
    _one_line_error(code, err, "cannot write to")
    assert "Permission denied" in err
