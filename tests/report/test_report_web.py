"""The browser's results pages with the report's plots and the paired comparison view (TestClient)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from report_helpers import probs, write_result

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from webkit import build_small_store  # noqa: E402

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from genies.web.app import create_app  # noqa: E402

SHIFTS = [("s1", "t1", "skill"), ("<b>s2</b>", "t2", "context")]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-web")
    data = build_small_store(tmp)
    rng = np.random.default_rng(5)
    store, results = tmp / "store", tmp / "results"
    base = {t: probs(rng, 50, 0.6) for _, t, _ in SHIFTS}
    ttc = {t: probs(rng, 50, 0.9) for _, t, _ in SHIFTS}
    write_result(results, store, "iv_a", SHIFTS, {t: probs(rng, 50, 0.5) for t in base}, base, ttc)
    write_result(results, store, "iv_b", SHIFTS, {t: probs(rng, 50, 0.8) for t in base}, base, ttc)
    write_result(
        results, store, "iv_c", SHIFTS, base, base, ttc, pair_ids={"t1": [f"{i}/3" for i in range(50)]}
    )
    return TestClient(create_app(data, store, results), base_url="http://127.0.0.1")


def test_result_page_shows_plots_and_compare_form(client):
    page = client.get("/results/iv_a/test.json")
    assert page.status_code == 200
    for kind in ("de", "generalization", "reliability"):
        assert f'src="/plot/{kind}?r=iv_a/test.json"' in page.text
    assert 'action="/compare"' in page.text and "&lt;b&gt;s2&lt;/b&gt;" in page.text
    for kind in ("de", "generalization", "reliability"):
        img = client.get(f"/plot/{kind}?r=iv_a/test.json")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.content.startswith(PNG)
    assert client.get("/plot/transfer?r=iv_a/test.json").status_code == 200  # drawn on request
    assert client.get("/plot/nope?r=iv_a/test.json").status_code == 404
    assert client.get("/plot/de?r=../../etc/passwd").status_code == 404


def test_compare_view(client):
    page = client.get("/compare?a=iv_a/test.json&b=iv_b/test.json")
    assert page.status_code == 200
    assert 'id="compare-table"' in page.text and "Holm" in page.text and "permutation" in page.text
    assert "&lt;b&gt;s2&lt;/b&gt; → t2" in page.text and "<b>s2</b>" not in page.text
    img = client.get("/plot/compare?a=iv_a/test.json&b=iv_b/test.json")
    assert img.status_code == 200 and img.content.startswith(PNG)
    refused = client.get("/compare?a=iv_a/test.json&b=iv_c/test.json")
    assert refused.status_code == 422 and "scored different pairs" in refused.text
    assert client.get("/compare?a=iv_a/test.json&b=nope.json").status_code == 404
    assert client.post("/compare?a=iv_a/test.json&b=iv_b/test.json").status_code == 405
