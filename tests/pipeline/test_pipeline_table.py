"""Results tables: rows, category and suite means, CSV/JSON/folder inputs, the paper's numbers."""

from __future__ import annotations

import io
import json
from statistics import mean

import pytest
from rich.console import Console

from genies.errors import DataError, GeniesError
from genies.records import ShiftResult
from genies.report import table


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=250, color_system=None), buf


def _summary(paths, **kw) -> list[dict]:
    con, buf = _console()
    table.show(paths, as_json=True, console=con, **kw)
    return json.loads(buf.getvalue())


def test_json_summary_has_rows_category_and_suite_means(toy):
    outcome = toy.run(intervention="test_bias")
    (doc,) = _summary([outcome.json_path])
    rows = outcome.result.rows
    assert [r["target"] for r in doc["rows"]] == [r.target for r in rows]
    skill = [r for r in rows if r.category == "skill"]
    cm = doc["category_means"]
    assert set(cm) == {"skill", "context"} and cm["skill"]["rows"] == 2
    assert set(cm["skill"]["counts"].values()) == {2}
    assert cm["skill"]["generalization_accuracy"] == pytest.approx(
        mean(r.generalization_accuracy for r in skill)
    )
    sm = doc["suite_mean"]
    assert sm["rows"] == 3 and sm["counts"] == {c: 3 for c, _ in table.MEAN_COLUMNS}
    assert sm["differential_elicitation"] == pytest.approx(mean(r.differential_elicitation for r in rows))
    assert sm["source_ID_accuracy"] == pytest.approx(mean(r.source_ID_accuracy for r in rows))


def test_rendered_table_lists_shifts_and_means(toy):
    outcome = toy.run(intervention="test_bias")
    con, buf = _console()
    table.show([outcome.json_path], console=con)
    text = buf.getvalue()
    assert "toy_a → toy_c @toy_d" in text and "toy_e → toy_b" in text
    assert "mean: skill" in text and "mean: context" in text and "mean: " + str(toy.suite) in text
    gen = outcome.result.rows[0].generalization_accuracy
    assert f"{gen:.3f}" in text


def test_csv_input_matches_json_input(toy):
    outcome = toy.run(intervention="test_bias")
    (from_json,) = _summary([outcome.json_path])
    (from_csv,) = _summary([outcome.csv_path])
    for a, b in zip(from_json["rows"], from_csv["rows"], strict=True):
        for col, _ in table.MEAN_COLUMNS:
            assert a[col] == pytest.approx(b[col], nan_ok=True)
    assert from_csv["intervention"] == toy.out.name


def test_folder_input_and_suite_filter(toy, tmp_path):
    toy.run(out=tmp_path / "res" / "a")
    toy.run(intervention="test_bias", out=tmp_path / "res" / "b")
    docs = _summary([tmp_path / "res"])
    assert sorted(d["intervention"] for d in docs) == ["test_bias", "test_length"]
    assert len(_summary([tmp_path / "res"], suite=toy.suite.stem)) == 2
    with pytest.raises(DataError, match="no genies results for suite 'genies'"):
        _summary([tmp_path / "res"], suite="genies")


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such results file or folder"):
        table.load_results([tmp_path / "missing.json"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "suite_result"')
    with pytest.raises(DataError, match="is not a genies suite result"):
        table.load_results([bad])
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="missing column 'source'"):
        table.load_results([csv])


def test_paper_numbers_sit_beside_each_row(toy, monkeypatch):
    outcome = toy.run(intervention="test_bias")
    seen = {}

    def fake_paper_rows(model, intervention, suite, **kw):
        seen.update(model=model, intervention=intervention, suite=suite)
        return [
            ShiftResult(
                source=r.source,
                target=r.target,
                target_reference=r.target_reference,
                generalization_accuracy=0.25 + i / 10,
                differential_elicitation=0.05 * i,
            )
            for i, r in enumerate(outcome.result.rows)
        ]

    import genies.results.upstream as upstream

    monkeypatch.setattr(upstream, "paper_rows", fake_paper_rows)
    (doc,) = _summary([outcome.json_path], paper_model="llama-30b")
    assert seen == {"model": "llama-30b", "intervention": "test_bias", "suite": str(toy.suite)}
    assert [p["generalization_accuracy"] for p in doc["paper"]] == pytest.approx([0.25, 0.35, 0.45])
    assert doc["paper_suite_mean"]["generalization_accuracy"] == pytest.approx(0.35)
    con, buf = _console()
    table.show([outcome.json_path], paper_model="llama-30b", console=con)
    assert "paper gen" in buf.getvalue() and "0.450" in buf.getvalue()


def test_paper_numbers_need_an_import(toy):
    outcome = toy.run()
    with pytest.raises(GeniesError, match="no imported paper results"):
        table.show([outcome.json_path], paper_model="llama-30b", console=_console()[0])


# ------------------------------------------------------------------------------------------- CLI


def test_results_table_command(toy, capsys):
    from genies.cli import main

    outcome = toy.run(intervention="test_bias")
    capsys.readouterr()
    assert main(["results", "table", str(outcome.json_path)]) == 0
    out = capsys.readouterr().out
    assert "toy_e → toy_b" in out and "mean: skill" in out
    assert main(["results", "table", str(toy.out), "--json"]) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert doc["suite_mean"]["rows"] == 3
    assert main(["results", "table", str(outcome.json_path), "--paper", "llama-30b"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no imported paper results") and "\n" not in err
    assert main(["results", "table", str(toy.root / "nope.json")]) == 1
    assert "no such results file or folder" in capsys.readouterr().err


@pytest.fixture(scope="session")
def paper_store(shared_dir, tmp_path_factory):
    tarball = shared_dir / "genies-published-results.tar.gz"
    if not tarball.is_file():
        pytest.skip(f"published results tarball not found at {tarball}")
    from genies.results.upstream import import_upstream

    store = tmp_path_factory.mktemp("paper-store")
    import_upstream(tarball, store=store, progress=False)
    return store


def test_results_table_puts_the_paper_beside_a_genies_suite_result(paper_store, tmp_path, capsys):
    """A zero_shot result over the GENIES suite next to llama-30b's numbers (published means .486/.000)."""
    from genies.cli import main
    from genies.records import SuiteResult
    from genies.shifts import get_suite

    rows = [
        ShiftResult(
            source=s.source,
            target=s.target,
            target_reference=s.reference,
            category=s.category,
            generalization_accuracy=0.5,
        )
        for s in get_suite("genies")
    ]
    path = tmp_path / "genies.json"
    path.write_text(SuiteResult(suite="genies", intervention="zero_shot", rows=rows).model_dump_json())
    assert (
        main(["results", "table", str(path), "--paper", "llama-30b", "--store", str(paper_store), "--json"])
        == 0
    )
    (doc,) = json.loads(capsys.readouterr().out)
    assert len(doc["paper"]) == 15
    assert doc["paper_suite_mean"]["generalization_accuracy"] == pytest.approx(0.486, abs=5e-4)
    assert doc["paper_suite_mean"]["differential_elicitation"] == pytest.approx(0.0, abs=5e-4)
    assert main(["results", "table", str(path), "--paper", "llama-30b", "--store", str(paper_store)]) == 0
    assert "paper gen" in capsys.readouterr().out
