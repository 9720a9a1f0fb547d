"""End-to-end: `genies browse` as a real server process, driven in headless Chromium by Playwright.

One server (``genies browse --port 0``, a subprocess) and one browser for the whole module. The data
is the official release when ../shared has it (plus an ``xss_probe`` distribution linked in beside
it), else a small generated store; evaluations and results are generated test inputs (webkit.py).

Measured and printed at the end of the run (and written to test-artifacts/browser/metrics.json): the
server's start-up time to its first answered request, the code_hard example page's load time in the
browser (first view, which parses the split, and later views), and the server's peak RSS. Speed is
reported, not asserted (machines are shared). Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from webkit import (
    ROWS_A,
    ROWS_B,
    XSS,
    build_small_store,
    evaluation,
    save,
    suite_result,
    write_result,
    write_xss,
)

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)

CHROMIUM = os.environ.get("GENIES_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Debian's chromium is not installed (apt-get install -y chromium; or set GENIES_CHROMIUM)",
        allow_module_level=True,
    )

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHARED = Path(os.environ.get("GENIES_SHARED_DIR", Path(__file__).resolve().parents[3] / "shared"))
NAV_TIMING = """() => { const n = performance.getEntriesByType('navigation')[0];
  return {load: n.loadEventEnd - n.startTime, ttfb: n.responseStart - n.startTime}; }"""


def _data_store(request, tmp: Path) -> Path:
    """The official data (linked, plus xss_probe) if ../shared has it, else a small store."""
    if not (SHARED / "genies-datasets.tar.gz").is_file():
        return build_small_store(tmp)
    official = request.getfixturevalue("data_dir") / "distributions"
    root = tmp / "data" / "distributions"
    root.mkdir(parents=True)
    for d in official.iterdir():
        if d.is_dir():
            (root / d.name).symlink_to(d, target_is_directory=True)
    shutil.copy2(official / "manifest.json", root / "manifest.json")
    write_xss(tmp / "data")
    return tmp / "data"


class Server:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        code = "import sys; from genies.cli import main; sys.exit(main(sys.argv[1:]))"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "browse", "--port", "0", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.url = self._wait_for_url()
        self.startup_s = self._first_response()
        self.startup_cpu_s = self.cpu_s()

    def _wait_for_url(self, timeout: float = 60) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
                if m and not found:
                    found.append(m.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("genies browse did not start:\n" + "".join(self.lines))
            time.sleep(0.02)
        return found[0]

    def _first_response(self) -> float:
        with urllib.request.urlopen(self.url, timeout=30) as resp:
            assert resp.status == 200
        return time.perf_counter() - self.started

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the server so far (a number shared machines disturb less)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float | None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(m.group(1)) / 1024 if m else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def site(request, tmp_path_factory, metrics):
    tmp = tmp_path_factory.mktemp("browser-site")
    data = _data_store(request, tmp)
    store, results = tmp / "store", tmp / "results"
    records = [
        evaluation(data, "code_hard", seed=11),
        evaluation(data, "code_hard", intervention="few_shot", train="code_easy", seed=12, limit=200),
    ]
    for rec in records:
        save(store, rec)
    write_result(results, "tiny/zero_shot/genies.json", suite_result("zero_shot", ROWS_A))
    write_result(results, "tiny/few_shot/genies.json", suite_result("few_shot", ROWS_B))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENIES_DATA")}
    server = Server(["--data-dir", str(data), "--store", str(store), "--results", str(results)], env)
    metrics["data"] = (
        "official release" if (data / "distributions" / "alpaca_easy").exists() else "small test store"
    )
    metrics["distributions served"] = len(list((data / "distributions").iterdir())) - 1
    metrics["server start-up to first response, wall (s)"] = round(server.startup_s, 2)
    if server.startup_cpu_s is not None:
        metrics["server start-up to first response, CPU (s)"] = round(server.startup_cpu_s, 2)
    metrics["machine load average at start"] = round(os.getloadavg()[0], 1)
    official = metrics["data"] == "official release"
    query = "linked list" if official else "banana"
    yield {"url": server.url, "data": data, "records": records, "server": server, "query": query}
    rss = server.peak_rss_mb()
    if rss is not None:
        metrics["server peak RSS (MB)"] = round(rss, 1)
    server.stop()


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with playwright_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1360, "height": 900},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser_context, site):
    page = browser_context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    assert dialogs == [], f"a dataset string ran as script: {dialogs}"
    page.close()


def shot(page, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)


def nav_ms(page) -> dict[str, float]:
    return page.evaluate(NAV_TIMING)


# ------------------------------------------------------------------------------------------- tests


def test_code_hard_example_page_load_time(page, site, artifacts_dir, metrics):
    url, server = site["url"], site["server"]
    cpu0 = server.cpu_s()
    page.goto(url + "d/code_hard/test/0")  # first view: the server parses code_hard here
    cold = nav_ms(page)
    cpu1 = server.cpu_s()
    warm = []
    for i in range(1, 6):
        page.click("#example-pager a[rel=next]")
        page.wait_for_url(f"**/d/code_hard/test/{i}")
        warm.append(nav_ms(page)["load"])
    cpu2 = server.cpu_s()
    assert page.locator("#pairs tbody tr").count() == 2
    shot(page, artifacts_dir, "example-code_hard")
    metrics["code_hard example page load, first view (ms)"] = round(cold["load"], 1)
    metrics["code_hard example page load, next examples, median of 5 (ms)"] = round(
        statistics.median(warm), 1
    )
    metrics["code_hard example page, server time to first byte, first view (ms)"] = round(cold["ttfb"], 1)
    if cpu0 is not None:
        metrics["server CPU for the first code_hard view (ms)"] = round(1000 * (cpu1 - cpu0))
        metrics["server CPU per next example, mean of 5 (ms)"] = round(200 * (cpu2 - cpu1))


def test_index_then_click_into_a_distribution(page, site, artifacts_dir):
    page.goto(site["url"])
    rows = page.locator("#distributions tbody tr")
    assert rows.count() == len([p for p in (site["data"] / "distributions").iterdir() if p.is_dir()])
    shot(page, artifacts_dir, "index")
    page.click("#distributions a[href='/d/code_hard']")
    page.wait_for_url("**/d/code_hard")
    assert page.locator("h1").inner_text().startswith("code_hard")
    assert page.locator("table.examples tbody tr").count() == 25
    page.click(".pager a[rel=next]")
    page.wait_for_url("**page=2")
    assert "page 2 of" in page.locator(".pager").first.inner_text()
    page.click(".switch a:text('train')")
    page.wait_for_url("**split=train**")
    assert page.locator(".switch .on").inner_text() == "train"
    shot(page, artifacts_dir, "distribution-code_hard-train")


def test_next_example_and_pairs(page, site, artifacts_dir):
    page.goto(site["url"] + "d/code_hard/test/0")
    first_prompt = page.locator("#prompt").inner_text()
    page.click("#example-pager a[rel=next]")
    page.wait_for_url("**/d/code_hard/test/1")
    assert page.locator("#prompt").inner_text() != first_prompt
    assert page.locator("li.response.preferred").count() == 1
    assert page.locator("li.response.preferred .badge").inner_text().endswith("preferred")
    rec = site["records"][0]
    p = dict(zip(rec.pair_ids, rec.p_correct, strict=True))
    row = page.locator("#pairs tbody tr", has_text="zero_shot")
    cells = row.locator("td.p").all_inner_texts()
    best = int(page.locator("li.response.preferred").get_attribute("data-response"))
    others = [j for j in range(page.locator("li.response").count()) if j != best]
    assert cells == [f"{p[f'1/{j}']:.3f}" for j in others]


def test_search_within_a_distribution(page, site, artifacts_dir):
    page.goto(site["url"] + "d/code_hard")
    query = site["query"]
    page.fill("#search input[name=q]", query)
    page.press("#search input[name=q]", "Enter")
    page.wait_for_url(f"**q={query.replace(' ', '+')}**")
    count = page.locator("#match-count").inner_text()
    n = int(count.split(" of ")[0])
    assert n >= 1, count
    first = page.locator("table.examples tbody tr a.plain").first
    first.click()
    page.wait_for_url("**/d/code_hard/test/*")
    text = (
        page.locator("#prompt").inner_text() + " ".join(page.locator("li.response pre").all_inner_texts())
    ).lower()
    assert query in text
    shot(page, artifacts_dir, "search-code_hard")


def test_filter_pairs_an_evaluation_gets_wrong(page, site, artifacts_dir):
    rec = site["records"][0]
    wrong = {int(pid.split("/")[0]) for pid, p in zip(rec.pair_ids, rec.p_correct, strict=True) if p < 0.5}
    page.goto(site["url"] + "d/code_hard")
    page.select_option("#search select[name=wrong]", rec.key)
    page.click("#search button[type=submit]")
    page.wait_for_url(f"**wrong={rec.key}**")
    assert page.locator("#match-count").inner_text().startswith(f"{len(wrong)} of ")
    shown = {int(t) for t in page.locator("table.examples tbody td.num a").all_inner_texts()}
    assert shown and shown <= wrong
    shot(page, artifacts_dir, "wrong-filter-code_hard")


def test_open_a_shift(page, site, artifacts_dir):
    page.goto(site["url"] + "shifts")
    assert page.locator("section.category").count() == 8
    shot(page, artifacts_dir, "shifts")
    page.click("a[href='/shifts/code_easy/code_hard']")
    page.wait_for_url("**/shifts/code_easy/code_hard")
    assert "difficulty" in page.locator(".explain-box").inner_text()
    assert page.locator("#source-pane li.response").count() >= 2
    assert page.locator("#target-pane li.response").count() >= 2
    page.click("#shift-pager a[rel=next]")
    page.wait_for_url("**i=1")
    assert "train #1" in page.locator("#source-pane h2").inner_text()
    shot(page, artifacts_dir, "shift-code_easy-code_hard")


def test_results_sort_and_filter(page, site, artifacts_dir):
    page.goto(site["url"])
    page.click("header nav a:text('Results')")
    page.wait_for_url("**/results")
    assert page.locator("#results-table tbody tr").count() == 6

    def de_column() -> list[float | None]:
        cells = page.locator("#results-table tbody td[data-value]")
        idx = [c for c in range(cells.count())]
        values = [cells.nth(i) for i in idx]
        # DE is the last numeric column of each row: 6 numeric cells per row.
        de = [v.get_attribute("data-value") for v in values][5::6]
        return [float(x) if x else None for x in de]

    page.click("#results-table th a[data-column=differential_elicitation]")
    page.wait_for_url("**sort=differential_elicitation**")
    first = de_column()
    present = [x for x in first if x is not None]
    assert present in (sorted(present), sorted(present, reverse=True)) and first[-1] is None
    page.click("#results-table th a[data-column=differential_elicitation]")  # the other direction
    page.wait_for_url("**sort=differential_elicitation**")
    second = [x for x in de_column() if x is not None]
    assert second == list(reversed(present))
    shot(page, artifacts_dir, "results-sorted")
    page.select_option("form.filters select[name=category]", "encoding")
    page.select_option("form.filters select[name=intervention]", "few_shot")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**category=encoding**")
    assert page.locator("#results-table tbody tr").count() == 1
    page.click("#results-table tbody a:text('few_shot')")
    page.wait_for_url("**/results/tiny/few_shot/genies.json")
    assert page.locator("#results-table tbody tr").count() == 3
    page.locator("#plot-de").scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#plot-de').complete")
    assert page.locator("#plot-de").evaluate("img => img.naturalWidth") > 100  # the report's DE plot
    shot(page, artifacts_dir, "result-file")
    page.click("form.compare button[type=submit]")  # these rows name no stored records: a clear refusal
    page.wait_for_url("**/compare?a=**")
    assert "cannot be compared" in page.locator("body").inner_text()


def test_dataset_html_is_shown_as_text(page, site, artifacts_dir):
    page.goto(site["url"] + "d/xss_probe/test/0")
    assert page.locator("#prompt").inner_text() == XSS
    assert page.locator("script").count() == 0
    assert page.locator("main img").count() == 0 and page.locator("main b").count() == 0
    shot(page, artifacts_dir, "xss-probe")
