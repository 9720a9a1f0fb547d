"""Results tables: honest means (rows averaged per column), strict CSV cells, a narrow-terminal layout."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from genies.errors import DataError
from genies.records import UPSTREAM_CSV_COLUMNS, ShiftResult, SuiteResult
from genies.report import table
from genies.shifts import get_suite


def _suite(n_missing_de: int = 5, n_missing_gen: int = 1) -> SuiteResult:
    """The 15 GENIES shifts with made-up numbers; DE missing in the first rows, gen acc in the last."""
    rows = []
    shifts = get_suite("genies")
    for i, s in enumerate(shifts):
        rows.append(
            ShiftResult(
                source=s.source,
                target=s.target,
                target_reference=s.reference,
                category=s.category,
                generalization_accuracy=None if i >= len(shifts) - n_missing_gen else 0.5 + i / 100,
                generalization_accuracy_ci=(0.41, 0.62),
                baseline_accuracy=0.55,
                target_tuned_capability=0.8,
                target_tuned_capability_intervention="few_shot",
                source_ID_accuracy=0.7,
                RMS_calibration_error=0.2,
                differential_elicitation=None if i < n_missing_de else 0.1 + i / 1000,
                differential_elicitation_ci=(-0.1, 0.3),
            )
        )
    return SuiteResult(suite="genies", intervention="zero_shot", model={"name": "smollm2-135m"}, rows=rows)


def _render(result: SuiteResult, width: int) -> str:
    buf = io.StringIO()
    table.render_suite_result(result, Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- means


def test_means_state_the_rows_they_average_per_column():
    res = _suite(n_missing_de=5, n_missing_gen=1)
    doc = table.summary_json(table.LoadedResult(Path("genies.json"), res))
    sm = doc["suite_mean"]
    assert "n" not in sm  # the old single count claimed 15 rows for every column
    assert sm["rows"] == 15
    assert sm["counts"]["differential_elicitation"] == 10
    assert sm["counts"]["generalization_accuracy"] == 14
    assert sm["counts"]["baseline_accuracy"] == 15
    de = [r.differential_elicitation for r in res.rows if r.differential_elicitation is not None]
    assert sm["differential_elicitation"] == pytest.approx(sum(de) / 10)
    for cat, m in doc["category_means"].items():
        rows = [r for r in res.rows if r.category == cat]
        assert m["rows"] == len(rows)
        assert m["counts"]["differential_elicitation"] == sum(
            r.differential_elicitation is not None for r in rows
        )


def test_the_table_shows_partial_means():
    text = _render(_suite(n_missing_de=5, n_missing_gen=0), 250)
    assert "DE mean over 10 of 15 shifts" in text
    suite_row = next(ln for ln in text.splitlines() if "mean: genies" in ln)
    assert "15 shifts" in suite_row and "(10/15)" in suite_row
    # a complete column shows no count
    assert "(15/15)" not in text
    # the stacked layout says the same in words
    narrow = _render(_suite(n_missing_de=5, n_missing_gen=0), 40)
    block = narrow[narrow.index("mean: genies (15 shifts)") :]
    assert re.search(r"DE\s+0\.\d{3} \(over 10 of 15\)", block)


# ------------------------------------------------------------------------------------------- CSV cells


def _csv(tmp_path: Path, value: str) -> Path:
    header = ",".join(UPSTREAM_CSV_COLUMNS)
    row = f"crt_1,crt_2,crt_2,{value},0.5,zero_shot,0.9,zero_shot,0.7,0.1,0.2"
    p = tmp_path / "zero_shot" / "x.csv"
    p.parent.mkdir(exist_ok=True)
    p.write_text(f"{header}\n{row}\n")
    return p


@pytest.mark.parametrize("value", ["abc", "inf", "0.5.1", "true"])
def test_a_non_numeric_cell_is_an_error(tmp_path, value):
    with pytest.raises(DataError, match=rf"line 2: generalization_accuracy is not a number: '{value}'"):
        table.load_results([_csv(tmp_path, value)])


def test_empty_cells_are_missing_values_not_errors(tmp_path):
    (loaded,) = table.load_results([_csv(tmp_path, "")])
    assert loaded.result.rows[0].generalization_accuracy is None
    (loaded,) = table.load_results([_csv(tmp_path, "0.625")])
    assert loaded.result.rows[0].generalization_accuracy == 0.625


def test_a_row_without_source_is_an_error(tmp_path):
    p = _csv(tmp_path, "0.5")
    p.write_text(p.read_text().replace("\ncrt_1,", "\n,"))
    with pytest.raises(DataError, match="line 2: source is empty"):
        table.load_results([p])


def test_a_folder_with_a_non_utf8_json_is_skipped_not_a_crash(tmp_path):
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="no genies results"):
        table.load_results([tmp_path])


# ------------------------------------------------------------------------------------------- narrow


@pytest.mark.parametrize("width", [40, 60, 80, 100])
def test_narrow_consoles_get_whole_numbers_and_whole_shift_names(width):
    res = _suite()
    text = _render(res, width)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width
    for r in res.rows:
        assert (
            any(f"{r.source} → {r.target}" in ln for ln in lines) or width < 45
        )  # long names may wrap at spaces
        if r.generalization_accuracy is not None:
            assert f"{r.generalization_accuracy:.3f} (0.41…0.62)" in text
        if r.differential_elicitation is not None:
            assert f"{r.differential_elicitation:.3f}" in text
    # no cell cut short: an ellipsis only ever appears inside a CI "(a…b)" or the caption's "(…)"
    assert not re.search(r"\d…(?!\d)|…\s*[│|]", text)
    # and no word broken one letter per line
    assert not [ln for ln in lines if len(ln.strip()) == 1]


def test_wide_consoles_keep_the_wide_table():
    text = _render(_suite(), 200)
    assert "┃ shift" in text and "gen acc" in text.splitlines()[2]


def test_the_switch_happens_where_the_wide_table_stops_fitting():
    from rich.measure import Measurement

    loaded = table.LoadedResult(Path("genies.json"), _suite())
    con = Console(file=io.StringIO(), width=1000)
    need = Measurement.get(con, con.options, table.wide_table(loaded)).minimum
    assert "┃ shift" in _render(loaded.result, need)
    assert "┃ shift" not in _render(loaded.result, need - 1)


def test_json_output_is_unchanged_by_width(tmp_path):
    res = _suite()
    p = tmp_path / "genies.json"
    p.write_text(res.model_dump_json())
    buf = io.StringIO()
    table.show([p], as_json=True, console=Console(file=buf, width=40))
    (doc,) = json.loads(buf.getvalue())
    assert doc["suite_mean"]["counts"]["differential_elicitation"] == 10
