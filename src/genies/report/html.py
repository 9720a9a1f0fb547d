"""``genies report``: one self-contained HTML file (or Markdown + PNGs) from ``genies run`` results.

The HTML works offline and opens anywhere: CSS inline, plots as base64 PNG ``<img>`` data URIs, no
script, no link to any server. Every string taken from data (dataset ids, configs, paths) goes
through Jinja2's autoescape; nothing is marked safe except the PNG data URIs this module encodes.

Sections: the suite table (per-shift rows with CIs, per-category means, suite means — from
``genies.web.tables.results_table``, the table the browser shows), differential elicitation per shift
grouped by category with one bar series per result (and, with ``compare_paper``, the paper's
numbers for that model and the same intervention), a top-label reliability diagram per result (the
pooled generalization evaluations, ``genies.metrics.reliability_diagram``), the source × target
transfer heatmap when a result covers many shifts (``--suite all``), paired comparisons
(``genies.report.compare``) of every further result against the first, and the run metadata.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genies.errors import DataError, GeniesError
from genies.records import SuiteResult
from genies.report._templates import CSS, TEMPLATES

#: A result gets a transfer heatmap when it covers at least this many distinct shifts.
HEATMAP_MIN_SHIFTS = 20


@dataclass
class Figure:
    name: str  # file stem for --format md
    title: str
    png: bytes
    caption: str = ""

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class ReportData:
    """Everything the templates show, as plain data."""

    title: str
    created: str
    results: list[tuple[str, SuiteResult]]
    table: Any  # genies.web.tables.Table
    figures: list[Figure] = field(default_factory=list)
    comparisons: list[Any] = field(default_factory=list)  # genies.report.compare.Comparison
    notes: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    paper_model: str | None = None
    paper: list[dict[str, Any]] = field(default_factory=list)  # per result and shift: ours beside the paper's


def _label(res: SuiteResult) -> str:
    from genies.web.tables import model_name

    model = model_name(res)
    return (
        f"{res.intervention} · {model} · {res.suite}" if model != "?" else f"{res.intervention} · {res.suite}"
    )


def generalization_p(res: SuiteResult, store: Path) -> list[float]:
    """p(correct) of every distinct generalization evaluation behind ``res``'s rows (pooled)."""
    from genies.web.evaluations import read_evaluation

    out: list[float] = []
    for key in dict.fromkeys(r.evaluation_keys.get("generalization") for r in res.rows):
        if not key:
            continue
        path = store / "evaluations" / key[:2] / f"{key}.json"
        rec = read_evaluation(path) if path.is_file() else None
        if rec is not None:
            out.extend(rec.p_correct)
    return out


def attach_paper_any_suite(loaded: Any, paper_model: str, store: Path) -> None:
    """The paper's numbers for ``loaded``'s shifts, whatever its suite (a shift file included).

    The paper's per-shift numbers depend on the model, intervention, source and target only, so they
    are taken from ``all-paper`` (every shift the paper evaluated) and matched by (source, target).
    """
    import math

    from genies.report.table import PAPER_COLUMNS
    from genies.results import upstream

    wanted = {(r.source, r.target) for r in loaded.result.rows}
    for r in upstream.paper_rows(paper_model, loaded.result.intervention, "all-paper", store=store):
        key = (r.source, r.target)
        if key in wanted and key not in loaded.paper:
            vals = {c: getattr(r, c, None) for c in PAPER_COLUMNS}
            loaded.paper[key] = {c: None if v is None or math.isnan(v) else float(v) for c, v in vals.items()}


def _metadata(path: Path, res: SuiteResult) -> dict[str, Any]:
    return {
        "path": str(path),
        "suite": res.suite,
        "intervention": res.intervention,
        "model": json.dumps(res.model, sort_keys=True),
        "intervention_config": json.dumps(res.intervention_config, sort_keys=True),
        "baseline": res.baseline_intervention,
        "ttc": res.ttc + (f" ({', '.join(res.ttc_interventions)})" if res.ttc_interventions else ""),
        "seed": res.seed,
        "limit": res.limit,
        "created": res.created,
        "versions": ", ".join(f"{k} {v}" for k, v in sorted(res.versions.items())),
        "git_commit": res.versions.get("git_commit", ""),
    }


def build(
    results: Sequence[Path],
    *,
    compare_paper: str | None = None,
    title: str | None = None,
    store: Path | None = None,
    suite: str | None = None,
    seed: int = 0,
) -> ReportData:
    """Load the results and compute every table, plot and comparison of the report."""
    from genies.paths import store_dir
    from genies.report import plots
    from genies.report.table import load_results
    from genies.web.tables import results_table

    store_path = store_dir(store)
    loaded = load_results(list(results), suite)
    ids = [str(lr.path) for lr in loaded]
    data = ReportData(
        title=title or "genies report: " + ", ".join(dict.fromkeys(_label(lr.result) for lr in loaded)),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        results=[(i, lr.result) for i, lr in zip(ids, loaded, strict=True)],
        table=results_table([(i, lr.result) for i, lr in zip(ids, loaded, strict=True)]),
        paper_model=compare_paper,
        metadata=[_metadata(lr.path, lr.result) for lr in loaded],
    )
    series: list[plots.Series] = []
    for lr in loaded:
        series.append(plots.Series(_label(lr.result), lr.result.rows))
        if compare_paper:
            try:
                attach_paper_any_suite(lr, compare_paper, store_path)
            except GeniesError as exc:
                data.notes.append(f"paper numbers for {lr.result.intervention}: {exc}")
            if lr.paper:
                from genies.records import ShiftResult

                for r in lr.result.rows:
                    pv = lr.paper.get((r.source, r.target), {})
                    data.paper.append(
                        {
                            "result": _label(lr.result),
                            "shift": f"{r.source} → {r.target}",
                            "gen": r.generalization_accuracy,
                            "paper_gen": pv.get("generalization_accuracy"),
                            "de": r.differential_elicitation,
                            "paper_de": pv.get("differential_elicitation"),
                        }
                    )

                paper_rows = [
                    ShiftResult(source=s, target=t, target_reference=t, category=r.category, **vals)
                    for r in lr.result.rows
                    for (s, t), vals in [((r.source, r.target), lr.paper.get((r.source, r.target), {}))]
                ]
                series.append(
                    plots.Series(f"paper: {compare_paper} · {lr.result.intervention}", paper_rows, True)
                )
    data.figures.append(
        Figure(
            "de",
            "Differential elicitation per shift",
            plots.de_bars(series),
            "One bar per result (error bars: 95% bootstrap CI); hatched grey: the paper's published "
            "numbers for the same intervention. Shifts are grouped by category (right margin).",
        )
    )
    data.figures.append(
        Figure(
            "generalization",
            "Generalization accuracy per shift",
            plots.de_bars(series, metric="generalization_accuracy"),
        )
    )
    panels = {}
    for lr in loaded:
        p = generalization_p(lr.result, store_path)
        if p:
            panels[_label(lr.result)] = p
        else:
            data.notes.append(
                f"no reliability diagram for {_label(lr.result)}: its evaluation records are not in {store_path}"
                " (a CSV result, or another --store)"
            )
    if panels:
        data.figures.append(
            Figure(
                "reliability",
                "Reliability (top-label) of the generalization evaluations",
                plots.reliability_plot(panels),
                "Confidence max(p, 1−p) in 10 bins over [0.5, 1]; bars: accuracy of the picked response "
                "(ties count half); dots: (mean confidence, accuracy); numbers: pairs per bin.",
            )
        )
    for n, lr in enumerate(loaded):
        shifts = {(r.source, r.target) for r in lr.result.rows}
        if len(shifts) >= HEATMAP_MIN_SHIFTS:
            data.figures.append(
                Figure(
                    f"transfer-{n}",
                    f"Source × target transfer: {_label(lr.result)}",
                    plots.transfer_heatmap(lr.result.rows, title=_label(lr.result)),
                    "Differential elicitation of each shift (blue: above the baseline, red: below); "
                    "grey: no such shift.",
                )
            )
    _comparisons(data, loaded, store_path, suite, seed)
    return data


def _comparisons(data: ReportData, loaded: Sequence[Any], store: Path, suite: str | None, seed: int) -> None:
    from genies.report import plots
    from genies.report.compare import compare_results

    first = loaded[0] if loaded else None
    for n, lr in enumerate(loaded[1:], start=1):
        if first.path.suffix.lower() != ".json" or lr.path.suffix.lower() != ".json":
            data.notes.append(f"no paired comparison of {lr.path}: CSV results have no per-pair records")
            continue
        try:
            c = compare_results(first.path, lr.path, suite=suite, seed=seed, store=store)
        except GeniesError as exc:
            data.notes.append(f"no paired comparison of {lr.path} with {first.path}: {exc}")
            continue
        data.comparisons.append(c)
        data.figures.append(
            Figure(
                f"compare-{n}",
                f"Paired comparison: {c.b.label} − {c.a.label}",
                plots.comparison_plot(c.shifts, f"B = {c.b.label}, A = {c.a.label}"),
            )
        )


# --------------------------------------------------------------------------------------- writing


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.DictLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _num
    env.filters["ci"] = _ci
    env.filters["pv"] = _pv
    env.filters["md"] = _md
    return env


def _num(x: Any, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _ci(ci: Any) -> str:
    if not ci or any(v != v for v in ci):
        return ""
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _pv(p: Any) -> str:
    if p is None or p != p:
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _md(s: Any) -> Any:
    """A data string as inert Markdown table text: HTML escaped, pipes and backticks neutralised."""
    from markupsafe import Markup

    text = str(s).translate(_MD_INERT)  # one pass: an entity written here is never escaped again
    return Markup(text.replace("\n", " "))


#: HTML's specials and Markdown's syntax characters as numeric entities.
_MD_INERT = {ord(c): f"&#{ord(c)};" for c in "&<>\"'|`*_[]#\\"}


def write_report(
    results: Sequence[Path],
    out: Path,
    *,
    fmt: Literal["html", "md"] = "html",
    compare_paper: str | None = None,
    title: str | None = None,
    store: Path | None = None,
    suite: str | None = None,
) -> Path:
    """Write the report of ``results`` to ``out`` (HTML, or Markdown with ``<stem>-<plot>.png`` beside it)."""
    from genies.io import atomic_path, atomic_write_text

    if fmt not in ("html", "md"):
        raise DataError(f"unknown report format {fmt!r} (html or md)")
    out = Path(out)
    if out.is_dir():
        raise DataError(f"-o {out} is a folder; name the report file (e.g. {out}/report.{fmt})")
    if not out.parent.exists():
        raise DataError(f"-o {out}: folder {out.parent} does not exist")
    data = build(results, compare_paper=compare_paper, title=title, store=store, suite=suite)
    env = _env()
    if fmt == "html":
        atomic_write_text(out, env.get_template("report.html").render(d=data, css=CSS))
        _readable(out)
        return out
    images = {}
    for fig in data.figures:
        png = out.with_name(f"{out.stem}-{fig.name}.png")
        with atomic_path(png) as tmp:
            tmp.write_bytes(fig.png)
        _readable(png)
        images[fig.name] = png.name
    atomic_write_text(out, env.get_template("report.md").render(d=data, images=images))
    _readable(out)
    return out


def _readable(path: Path) -> None:
    """Give a written file the usual mode (0666 & ~umask): atomic writes start from mkstemp's 0600."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
