"""`genies browse` pages through Starlette's TestClient on a small store: content, escaping, safety."""

from __future__ import annotations

import html
import re
import socket
from pathlib import Path

import pytest
from webkit import (
    CODE_RESPONSE,
    HTML_RESPONSE,
    ROWS_A,
    ROWS_B,
    XSS,
    build_small_store,
    evaluation,
    save,
    suite_result,
    tree_hash,
    write_result,
)

from genies.shifts import CATEGORIES, CATEGORY_EXPLANATIONS

starlette = pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from genies.web.app import create_app  # noqa: E402
from genies.web.evaluations import read_evaluation  # noqa: E402


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browse")
    data = build_small_store(tmp)
    store, results = tmp / "store", tmp / "results"
    good = evaluation(data, "code_hard", seed=1)
    other = evaluation(data, "code_hard", intervention="few_shot", train="code_easy", seed=2, limit=30)
    stale = evaluation(data, "code_hard", intervention="stale_iv", seed=3, fingerprint="0" * 64)
    for rec in (good, other, stale):
        save(store, rec)
    (store / "evaluations" / "ff").mkdir(parents=True, exist_ok=True)
    (store / "evaluations" / "ff" / ("f" * 64 + ".json")).write_text("{not json")  # ignored
    write_result(
        results, "m/zero_shot/genies.json", suite_result("zero_shot", ROWS_A, keys={"code_hard": good.key})
    )
    write_result(results, "m/few_shot/genies.json", suite_result("few_shot", ROWS_B))
    (results / "m" / "broken").mkdir(parents=True)
    (results / "m" / "broken" / "genies.json").write_text('{"kind": "suite_result", "rows": 7}')
    before = {name: tree_hash(p) for name, p in (("data", data), ("store", store), ("results", results))}
    client = TestClient(create_app(data, store, results), base_url="http://127.0.0.1")
    return {
        "client": client,
        "data": data,
        "store": store,
        "results": results,
        "good": good,
        "other": other,
        "stale": stale,
        "before": before,
    }


def get(env, url, status=200):
    r = env["client"].get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    return r.text


def rows_of(page: str, table_id: str) -> list[str]:
    body = page.split(f'id="{table_id}"', 1)[1].split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)


# ------------------------------------------------------------------------------------------- pages


def test_index_lists_every_distribution_with_counts(env):
    page = get(env, "/")
    rows = rows_of(page, "distributions")
    assert len(rows) == 4
    hard = next(r for r in rows if 'href="/d/code_hard"' in r)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", hard, flags=re.S)
    assert cells[2:7] == ["40", "60", "120", "180", "4"]  # train, test, pairs, responses/example
    assert cells[8].strip() == "3"  # three evaluations of code_hard in the store (one stale)
    assert "4 distributions" in page


def test_distribution_page_pages_searches_and_switches_split(env):
    page = get(env, "/d/code_hard")
    assert "60 examples" in page and "page 1 of 3" in page
    assert page.count('href="/d/code_hard/test/') >= 25
    page2 = get(env, "/d/code_hard?page=2")
    assert 'href="/d/code_hard/test/25"' in page2 and 'href="/d/code_hard/test/24"' not in page2
    found = get(env, "/d/code_hard?q=BANANA")  # case-insensitive, prompt text
    assert "20 of 60 examples contain “BANANA”" in found
    train = get(env, "/d/code_hard?split=train")
    assert "40 examples" in train and 'href="/d/code_hard/train/0"' in train
    assert get(env, "/d/code_hard?split=valid", 404)
    r = env["client"].get("/d/code_hard?split=train&goto=7", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/d/code_hard/train/7"
    assert get(env, "/d/code_hard?goto=60", 404)
    assert get(env, "/d/code_hard?page=abc", 400)


def test_example_page_marks_preferred_and_moves_within_the_search(env):
    page = get(env, "/d/code_hard/test/4?q=banana")
    assert "hard-test question 4 Banana" in page
    preferred = re.findall(r'<li class="response preferred" data-response="(\d)"', page)
    assert preferred == ["0"]  # example 4: best index 4 % 4 = 0
    assert 'href="/d/code_hard/test/1?q=banana"' in page  # previous match
    assert 'href="/d/code_hard/test/7?q=banana"' in page  # next match
    assert get(env, "/d/code_hard/test/60", 404)


def test_example_shows_p_correct_per_pair_and_evaluation(env):
    good, other = env["good"], env["other"]
    page = get(env, "/d/code_hard/test/2")
    pairs = dict(zip(good.pair_ids, good.p_correct, strict=True))
    for j in (0, 1, 3):  # example 2's preferred response is index 2
        assert f"{pairs[f'2/{j}']:.3f}" in page
    assert "tiny-test-model · few_shot ← code_easy" in page
    assert "stale_iv" not in page.split('id="pairs"', 1)[1]  # the stale record is hidden...
    assert "1 evaluation(s) of an older version" in page  # ...and said to be
    late = get(env, "/d/code_hard/test/20")  # beyond few_shot's limit of 30 pairs: not scored
    row = next(r for r in rows_of(late, "pairs") if "few_shot" in r)
    assert row.count('class="num p na">–') == 3
    assert other.n == 30


def test_filter_pairs_an_evaluation_gets_wrong(env):
    good = env["good"]
    wrong = sorted(
        {int(pid.split("/")[0]) for pid, p in zip(good.pair_ids, good.p_correct, strict=True) if p < 0.5}
    )
    page = get(env, f"/d/code_hard?wrong={good.key}")
    assert f"{len(wrong)} of 60 examples" in page
    first_page = [int(i) for i in re.findall(r'href="/d/code_hard/test/(\d+)\?wrong=', page)]
    assert sorted(set(first_page)) == wrong[:25]
    combined = get(env, f"/d/code_hard?wrong={good.key}&q=apple")
    expected = [i for i in wrong if i % 3 == 0]
    assert f"{len(expected)} of 60 examples contain “apple” and have a pair" in combined
    assert "worst p" in page
    assert 'href="/d/code_hard?split=train"' in page  # the split switch drops the filter
    assert get(env, "/d/code_hard?wrong=" + "0" * 64, 404)
    assert get(env, f"/d/code_hard?wrong={env['stale'].key}", 404)


def test_shift_page_shows_both_sides_and_the_category(env):
    page = get(env, "/shifts/code_easy/code_hard?i=3")
    assert "easy question 3" in page and "hard-test question 3" in page
    assert CATEGORY_EXPLANATIONS["difficulty"] in html.unescape(page)
    assert "GENIES" in page
    rows = rows_of(page, "shift-results")
    assert len(rows) == 2 and "0.610" in page and "0.660" in page
    assert get(env, "/shifts/code_hard/code_easy", 404)  # not a registry shift
    assert get(env, "/shifts/alpaca_mmlu/spanish_output", 404)  # target not in this store


def test_shifts_page_explains_all_eight_categories(env):
    page = get(env, "/shifts")
    assert set(CATEGORY_EXPLANATIONS) == set(CATEGORIES) and len(CATEGORIES) == 8
    for cat in CATEGORIES:
        assert f'id="cat-{cat}"' in page
        assert CATEGORY_EXPLANATIONS[cat] in html.unescape(page)
    assert "56 shifts in 8 categories" in page
    assert "15 shifts in" in get(env, "/shifts?suite=genies")
    assert get(env, "/shifts?suite=nope", 404)


def _column(page: str, index: int) -> list[str]:
    return [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)[index] for r in rows_of(page, "results-table")]


def test_results_table_sorts_and_filters(env):
    page = get(env, "/results")
    assert len(rows_of(page, "results-table")) == 6
    assert "m/broken/genies.json" in page and "is not a genies suite result" in page
    de = 10  # intervention, model, suite, shift, category, 6 metrics: DE is the 11th cell
    asc = _column(get(env, "/results?sort=differential_elicitation&order=asc"), de)
    values = [float(re.sub(r"<.*", "", v)) for v in asc if not v.startswith("–")]
    assert values == sorted(values) and asc[-1].startswith("–")  # missing last
    desc = _column(get(env, "/results?sort=differential_elicitation&order=desc"), de)
    values = [float(re.sub(r"<.*", "", v)) for v in desc if not v.startswith("–")]
    assert values == sorted(values, reverse=True) and desc[-1].startswith("–")
    pivot = page.split("DE by category", 1)[1].split("</table>", 1)[0]
    difficulty = re.search(r"<td>difficulty</td>(.*?)</tr>", pivot, flags=re.S).group(1)
    assert re.findall(r">(-?[0-9.]+|–)<", difficulty) == ["0.450", "0.300"]  # few_shot, zero_shot columns
    enc = get(env, "/results?category=encoding")
    assert len(rows_of(enc, "results-table")) == 2
    fs = get(env, "/results?category=encoding&intervention=few_shot")
    assert len(rows_of(fs, "results-table")) == 1 and "-0.250" in fs
    one = get(env, "/results/m/zero_shot/genies.json?sort=generalization_accuracy&order=desc")
    gen = _column(one, 2)  # shift, category, gen acc
    assert [g.split("<")[0] for g in gen] == ["0.720", "0.610", "0.550"]
    assert "run metadata" in one
    wrong_links = re.findall(r'href="(/d/[^"]+)" title="the target', page)
    assert wrong_links == [
        f"/d/code_hard?split=test&amp;wrong={env['good'].key}"
    ]  # only where the record exists
    assert get(env, "/results/m/broken/genies.json", 422)
    assert get(env, "/results/nope.json", 404)


def test_evaluations_page_lists_the_store(env):
    page = get(env, "/evaluations")
    assert len(rows_of(page, "evaluations")) == 3
    assert env["good"].key[:8] in page


# ------------------------------------------------------------------------------------------- security


def test_dataset_strings_are_escaped(env):
    for url in ("/d/xss_probe/test/0", "/d/xss_probe", "/shifts/code_easy/code_hard"):
        page = get(env, url)
        assert "<script" not in page
        assert "<img" not in page and "<b>bold" not in page
    page = get(env, "/d/xss_probe/test/0")
    shown = [
        html.unescape(t) for t in re.findall(r'<pre class="text[^"]*"[^>]*>(.*?)</pre>', page, flags=re.S)
    ]
    assert XSS in shown  # the prompt, as text
    assert HTML_RESPONSE in shown and CODE_RESPONSE in shown  # "{{ 7*7 }}" stays as written
    assert any(XSS in t for t in shown if t.startswith("{"))  # the example's other fields (JSON)
    assert get(env, "/d/xss_probe?q=" + XSS).count("<script") == 0
    csp = env["client"].get("/").headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


@pytest.mark.parametrize(
    "url",
    [
        "/d/..%2F..%2Fetc",
        "/d/..%2Fcode_hard/test/0",
        "/d/%2e%2e/test/0",
        "/d/code_hard/..%2F..%2Fetc/0",
        "/results/..%2F..%2Fetc%2Fpasswd",
        "/results/%2e%2e/%2e%2e/data/distributions/code_hard/test.json",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/app.py",
        "/shifts/..%2F..%2Fetc/code_hard",
    ],
)
def test_no_path_reads_outside_the_store(env, url):
    r = env["client"].get(url)
    assert r.status_code == 404, (url, r.status_code)
    assert "root:" not in r.text and "def create_app" not in r.text


def test_raw_dot_dot_paths_are_404(env):
    # httpx normalises "/../"; send raw request targets through the ASGI app directly.
    import asyncio

    app = env["client"].app

    async def call(path: str) -> int:
        status = {}

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }  # fmt: skip
        await app(scope, receive, send)
        return status["code"]

    for path in ("/d/../../etc/passwd", "/d/../", "/results/../../etc/passwd", "/static/../app.py"):
        assert asyncio.run(call(path)) == 404, path


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("url", ["/", "/d/code_hard", "/results", "/static/style.css", "/no/such/page"])
def test_only_get_and_head(env, method, url):
    r = env["client"].request(method, url)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


def test_head_and_host_check(env):
    r = env["client"].head("/d/code_hard")
    assert r.status_code == 200 and r.content == b""
    assert env["client"].get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert env["client"].get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_browsing_changes_nothing(env):
    for url in ("/", "/d/code_hard?q=apple", "/d/code_hard/test/3", "/shifts", "/results", "/evaluations"):
        get(env, url)
    for name in ("data", "store", "results"):
        assert tree_hash(env[name]) == env["before"][name], name


def test_read_evaluation_rejects_bad_records(env, tmp_path):
    good = env["good"]
    path = env["store"] / "evaluations" / good.key[:2] / f"{good.key}.json"
    assert read_evaluation(path) == good
    moved = tmp_path / ("a" * 64 + ".json")
    moved.write_text(path.read_text())
    assert read_evaluation(moved) is None  # file name is not its key
    short = tmp_path / f"{good.key}.json"
    short.write_text(good.model_copy(update={"n": good.n + 1}).model_dump_json())
    assert read_evaluation(short) is None  # n disagrees with p_correct
    assert read_evaluation(tmp_path / "missing.json") is None


def test_new_evaluations_appear_without_restart(env):
    browser = env["client"].app.state.browser
    before = len(browser.evaluations.all())
    rec = evaluation(env["data"], "code_easy", seed=9)
    path = save(env["store"], rec)
    try:
        browser.evaluations.refresh(force=True)
        assert len(browser.evaluations.all()) == before + 1
        assert rec.key[:8] in get(env, "/evaluations")
    finally:
        path.unlink()
        browser.evaluations.refresh(force=True)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_errors_are_one_line(env, tmp_path, capsys):
    from genies.cli import main

    cases = [
        (["--data-dir", str(tmp_path / "missing")], "does not exist"),
        (["--data-dir", str(tmp_path)], "no distributions in the data store"),
        (["--data-dir", str(env["data"]), "--port", "70000"], "--port must be between"),
        (["--data-dir", str(env["data"]), "--host", "no.such.host.invalid"], "cannot listen on host"),
        (["--data-dir", str(env["data"]), "--results", str(tmp_path / "nope")], "is not a folder"),
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases.append((["--data-dir", str(env["data"]), "--port", str(port)], "already in use"))
        for args, message in cases:
            assert main(["browse", *args]) == 1, args
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err, err
            assert len(err.strip().splitlines()) == 1, err


def test_binds_localhost_by_default():
    from genies.web.server import allowed_hosts, bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
    finally:
        sock.close()
    assert allowed_hosts("0.0.0.0") is None
    from genies.cli import app as cli_app

    browse = next(c for c in cli_app.registered_commands if c.name == "browse")
    import inspect

    assert inspect.signature(browse.callback).parameters["host"].default.default == "127.0.0.1"


def test_start_up_parses_no_split_and_pages_parse_each_once(env, monkeypatch):
    """The index is built from the manifest; a split is parsed on its first view only."""
    from genies.data import loading, store
    from genies.data.validation import check_distribution

    calls: list[str] = []

    def counting(path, *args, **kwargs):
        calls.append(Path(path).name)
        return check_distribution(path, *args, **kwargs)

    monkeypatch.setattr(store, "check_distribution", counting)
    monkeypatch.setattr(loading, "check_distribution", counting)
    loading.clear_cache()
    client = TestClient(create_app(env["data"], env["store"], env["results"]), base_url="http://127.0.0.1")
    assert calls == []
    for url in ("/", "/shifts", "/results", "/evaluations"):
        assert client.get(url).status_code == 200
    assert calls == []
    for url in (
        "/d/code_hard/test/0",
        "/d/code_hard/test/1",
        "/d/code_hard?q=apple",
        "/d/code_hard?split=train",
    ):
        assert client.get(url).status_code == 200
    assert calls == ["code_hard"]
    assert client.get("/shifts/code_easy/code_hard").status_code == 200
    assert calls == ["code_hard", "code_easy"]


def test_records_of_one_split_share_their_pair_layout(env):
    evals = {e.key: e for e in env["client"].app.state.browser.evaluations.all()}
    good, stale, other = (evals[env[k].key] for k in ("good", "stale", "other"))
    assert good.layout is stale.layout  # same 180 pair ids: parsed once
    assert other.layout is not good.layout and other.n == 30
    assert good.pairs_of(2) == {
        j: env["good"].p_correct[env["good"].pair_ids.index(f"2/{j}")] for j in (0, 1, 3)
    }
    assert good.pairs_of(999) == {}


def test_response_marks_show_edits_of_the_preferred_response():
    from genies.data import Example
    from genies.web.app import response_marks

    best = "def f(x):\n    y = x + 1\n    z = y * 2\n    return z\n"
    edited = "def f(x):\n    y = x - 1\n    z = y * 2\n"  # one line changed, the return dropped
    other = "Something else entirely,\nwritten in prose."
    ex = Example("p", ((best, 1.0), (edited, 0.0), (other, 0.0)))
    marks = response_marks(ex)
    assert set(marks) == {1}  # the preferred response and the unrelated one are not marked
    assert [kind for kind, _ in marks[1]] == ["same", "chg", "same", "gone"]
    assert marks[1][1][1] == [("    y = x ", False), ("- ", True), ("1", False)]  # the changed word
    assert marks[1][3][1] == [("[1 line of the preferred response missing here]", False)]
    one_line = Example("p", (("so x = 24.", 1.0), ("so x = 25.", 0.0)))
    assert response_marks(one_line)[1] == [("chg", [("so x = ", False), ("25", True), (".", False)])]
