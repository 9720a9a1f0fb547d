"""genies.report.html.write_report: self-contained HTML, escaping, the Markdown variant, the plots."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
from report_helpers import probs, write_result

from genies.report.html import HEATMAP_MIN_SHIFTS, write_report

EVIL = "<script>alert(1)</script>"
SHIFTS = [("s1", "t1", "skill"), (EVIL, "t2", "context"), ("s3", "t3", "context")]
PNG = b"\x89PNG\r\n\x1a\n"


def _results(tmp_path, shifts=SHIFTS, n=60):
    rng = np.random.default_rng(2)
    store = tmp_path / "store"
    targets = {t for _, t, _ in shifts}
    base = {t: probs(rng, n, 0.6) for t in targets}
    ttc = {t: probs(rng, n, 0.9) for t in targets}
    gen_a = {t: probs(rng, n, 0.6) for t in targets}
    gen_b = {t: probs(rng, n, 0.75) for t in targets}
    a = write_result(tmp_path / "r", store, "iv_a", shifts, gen_a, base, ttc)
    b = write_result(tmp_path / "r", store, "iv_b", shifts, gen_b, base, ttc)
    doc = json.loads(a.read_text())
    doc["intervention_config"] = {"template": '<img src=x onerror="alert(2)"> & {prompt}'}
    a.write_text(json.dumps(doc))
    return a, b, store


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_self_contained_with_plots(tmp_path):
    a, b, store = _results(tmp_path)
    out = write_report([a, b], tmp_path / "report.html", store=store, title="My & report")
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)  # nothing fetched
    assert "<script" not in html.replace("&lt;script", "")  # no script at all (the data's is escaped)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    images = _images(html)
    assert len(images) >= 4 and all(img.startswith(PNG) for img in images)  # DE, gen, reliability, compare
    for section in (
        "Suite table",
        "Differential elicitation per shift",
        "Reliability (top-label)",
        "Paired comparisons",
        "Run metadata",
    ):
        assert section in html
    assert "My &amp; report" in html
    assert "abc123" in html  # git commit in the metadata
    assert "suite mean: " in html and "mean: " in html


def test_every_data_string_is_escaped(tmp_path):
    a, b, store = _results(tmp_path)
    html = write_report([a, b], tmp_path / "r.html", store=store).read_text(encoding="utf-8")
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'onerror="alert(2)"' not in html and "&lt;img src=x onerror=" in html


def test_markdown_variant_writes_pngs_beside(tmp_path):
    a, b, store = _results(tmp_path)
    out = write_report([a, b], tmp_path / "rep.md", fmt="md", store=store)
    md = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) >= 4
    for name in links:
        assert (tmp_path / name).read_bytes().startswith(PNG)
    assert EVIL not in md and "&#60;script&#62;" in md
    assert "| shift |" in md and "## Paired comparisons" in md
    assert "data:image" not in md
    assert "iv&#95;a" in md and "&&#" not in md  # Markdown syntax inert, escaped exactly once


def test_transfer_heatmap_for_many_shifts(tmp_path):
    shifts = [(f"s{i % 5}", f"t{i}", "skill") for i in range(HEATMAP_MIN_SHIFTS)]
    a, _, store = _results(tmp_path, shifts, n=20)
    html = write_report([a], tmp_path / "r.html", store=store).read_text(encoding="utf-8")
    assert "Source × target transfer" in html and "Paired comparisons" not in html
    few = write_report([a], tmp_path / "f.html", store=store, suite=None)
    assert few.exists()


def test_small_result_has_no_heatmap_and_notes_missing_records(tmp_path):
    a, _, _ = _results(tmp_path)
    html = write_report([a], tmp_path / "r.html", store=tmp_path / "other").read_text(encoding="utf-8")
    assert "Source × target transfer" not in html
    assert "no reliability diagram" in html


def test_paper_not_imported_is_a_note(tmp_path):
    a, _, store = _results(tmp_path)
    html = write_report([a], tmp_path / "r.html", store=store, compare_paper="llama-30b").read_text(
        encoding="utf-8"
    )
    assert "paper numbers for iv_a" in html


@pytest.mark.slow
def test_with_imported_paper_results(tmp_path):
    """The paper's numbers beside a result, from the published results (skips where ../shared lacks them)."""
    from pathlib import Path

    tar = Path(__file__).resolve().parents[2] / ".." / "shared" / "genies-published-results.tar.gz"
    if not tar.exists():
        pytest.skip(f"{tar} is absent")
    from genies.results.upstream import import_upstream

    store = tmp_path / "store"
    import_upstream(tar, store=store, progress=False)
    rng = np.random.default_rng(0)
    shifts = [("alpaca_mmlu", "spanish_output", "encoding"), ("alpaca_mmlu", "wrong_arc", "spurious_cues")]
    ts = [t for _, t, _ in shifts]
    a = write_result(
        tmp_path / "r",
        store,
        "zero_shot",
        shifts,
        {t: probs(rng, 30, 0.6) for t in ts},
        {t: probs(rng, 30, 0.6) for t in ts},
        {t: probs(rng, 30, 0.9) for t in ts},
        suite="genies",
    )
    html = write_report([a], tmp_path / "r.html", store=store, compare_paper="llama-30b").read_text(
        encoding="utf-8"
    )
    assert 'id="paper-table"' in html and "paper numbers for" not in html
    cells = re.findall(r"<td>alpaca_mmlu → spanish_output</td>(.*?)</tr>", html, re.S)[0]
    assert re.findall(r'<td class="n">([0-9.–-]+)</td>', cells)[1] != "–"  # the paper's accuracy is there


def test_paper_numbers_beside(tmp_path, monkeypatch):
    from genies.records import ShiftResult
    from genies.results import upstream

    def fake_rows(model, intervention, suite, *, store=None, **kw):
        assert suite == "all-paper" and model == "llama-30b"
        return [
            ShiftResult(
                source="s1",
                target="t1",
                target_reference="t1",
                generalization_accuracy=0.875,
                differential_elicitation=0.4321,
            )
        ]

    monkeypatch.setattr(upstream, "paper_rows", fake_rows)
    a, _, store = _results(tmp_path)
    html = write_report([a], tmp_path / "r.html", store=store, compare_paper="llama-30b").read_text(
        encoding="utf-8"
    )
    assert 'id="paper-table"' in html and "0.432" in html and "0.875" in html
