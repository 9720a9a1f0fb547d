"""Results tables: per-shift rows, per-category means and suite means of ``genies run`` outputs.

Reads ``<suite>.json`` (records.SuiteResult) or any CSV with the 11 upstream columns (ours or the
paper's), or folders holding them. Means are plain means over the rows as listed (a suite with
duplicated rows, such as all-paper, weights them as upstream's tables do), skipping missing values.
Optionally puts the paper's numbers for the same shifts beside each row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from genies.errors import DataError
from genies.records import UPSTREAM_CSV_COLUMNS, ShiftResult, SuiteResult

if TYPE_CHECKING:
    from rich.console import Console

#: Numeric columns that get means, with their short table headers.
MEAN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("generalization_accuracy", "gen acc"),
    ("baseline_accuracy", "base"),
    ("target_tuned_capability", "TTC"),
    ("source_ID_accuracy", "src ID"),
    ("RMS_calibration_error", "RMS cal"),
    ("differential_elicitation", "DE"),
)
PAPER_COLUMNS = ("generalization_accuracy", "differential_elicitation")
DEFAULT_RESULTS_DIR = Path("genies-results")


@dataclass
class LoadedResult:
    """One results file and what it holds."""

    path: Path
    result: SuiteResult
    paper: dict[tuple[str, str], dict[str, float | None]] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- loading


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _category(source: str, target: str) -> tuple[str | None, str | None]:
    try:
        from genies.shifts import find_shift
    except ImportError:  # pragma: no cover - shifts is part of genies
        return None, None
    s = find_shift(source, target)
    return (s.category, s.group) if s is not None else (None, None)


def read_csv_result(path: Path) -> SuiteResult:
    """A SuiteResult from a CSV with the upstream columns (intervention = the parent folder's name)."""
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read results CSV {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in UPSTREAM_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} is not a results table: missing column {missing[0]!r}")
    rows = []
    for rec in df.to_dict("records"):
        cat, group = _category(str(rec["source"]), str(rec["target"]))
        rows.append(
            ShiftResult(
                source=str(rec["source"]),
                target=str(rec["target"]),
                target_reference=str(rec["target_reference"]),
                category=cat,
                group=group,
                **{c: _num(rec[c]) for c, _ in MEAN_COLUMNS},
                baseline_intervention=_text(rec["baseline_intervention"]),
                target_tuned_capability_intervention=_text(rec["target_tuned_capability_intervention"]),
            )
        )
    return SuiteResult(suite=path.stem, intervention=path.parent.name, rows=rows)


def read_json_result(path: Path) -> SuiteResult:
    try:
        return SuiteResult.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, pydantic.ValidationError) as exc:
        raise DataError(f"{path} is not a genies suite result: {str(exc).splitlines()[0]}") from None


def _is_suite_json(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"suite_result"' in head


def find_result_files(paths: Sequence[Path], suite: str | None = None) -> list[Path]:
    """Result files named by ``paths`` (files, or folders searched recursively for ``*.json`` results).

    In folders only genies suite results (``kind: suite_result``) are picked, filtered by ``suite``.
    """
    found: list[Path] = []
    for p in paths:
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            pattern = f"{suite}.json" if suite else "*.json"
            found += sorted(f for f in p.rglob(pattern) if _is_suite_json(f))
        else:
            raise DataError(f"no such results file or folder: {p}")
    return list(dict.fromkeys(found))


def load_results(paths: Sequence[Path], suite: str | None = None) -> list[LoadedResult]:
    """Load every result named by ``paths`` (default folder: ``genies-results``)."""
    if not paths:
        if not DEFAULT_RESULTS_DIR.is_dir():
            raise DataError(
                f"no results given and no {DEFAULT_RESULTS_DIR}/ folder here",
                hint="pass a <suite>.json or .csv written by `genies run`, or a folder holding them",
            )
        paths = [DEFAULT_RESULTS_DIR]
    files = find_result_files(paths, suite)
    out = []
    for f in files:
        res = read_csv_result(f) if f.suffix.lower() == ".csv" else read_json_result(f)
        if suite and f.is_file() and res.suite != suite and f.stem != suite and f in paths:
            raise DataError(f"{f} holds suite {res.suite!r}, not {suite!r}")
        out.append(LoadedResult(f, res))
    if not out:
        where = ", ".join(str(p) for p in paths)
        raise DataError(f"no genies results{f' for suite {suite!r}' if suite else ''} under {where}")
    return out


def attach_paper(loaded: LoadedResult, paper_model: str, store: str | Path | None = None) -> None:
    """Add the paper's numbers for the same intervention and shifts (imported paper results needed)."""
    from genies.results import upstream

    res = loaded.result
    rows = upstream.paper_rows(paper_model, res.intervention, res.suite, store=store)
    for r in rows:
        get = r.get if isinstance(r, dict) else lambda k, _r=r: getattr(_r, k, None)
        loaded.paper[(str(get("source")), str(get("target")))] = {c: _num(get(c)) for c in PAPER_COLUMNS}


# ------------------------------------------------------------------------------------------- summaries


def _mean(values: Iterable[float | None]) -> float | None:
    xs = [v for v in values if v is not None and not math.isnan(v)]
    return sum(xs) / len(xs) if xs else None


def means(rows: Sequence[ShiftResult]) -> dict[str, float | None]:
    return {c: _mean(getattr(r, c) for r in rows) for c, _ in MEAN_COLUMNS}


def category_means(rows: Sequence[ShiftResult]) -> dict[str, dict[str, float | None]]:
    cats: dict[str, list[ShiftResult]] = {}
    for r in rows:
        cats.setdefault(r.category or "uncategorized", []).append(r)
    return {c: {"n": len(rs), **means(rs)} for c, rs in cats.items()}


def summary_json(loaded: LoadedResult) -> dict[str, Any]:
    res = loaded.result
    doc: dict[str, Any] = {
        "path": str(loaded.path),
        "suite": res.suite,
        "intervention": res.intervention,
        "model": res.model,
        "ttc": res.ttc,
        "rows": [r.model_dump(mode="json") for r in res.rows],
        "category_means": category_means(res.rows),
        "suite_mean": {"n": len(res.rows), **means(res.rows)},
    }
    if loaded.paper:
        doc["paper"] = [{"source": s, "target": t, **vals} for (s, t), vals in loaded.paper.items()]
        paper_for_rows = [loaded.paper.get((r.source, r.target), {}) for r in res.rows]
        doc["paper_suite_mean"] = {c: _mean(p.get(c) for p in paper_for_rows) for c in PAPER_COLUMNS}
    return doc


# ------------------------------------------------------------------------------------------- rendering


def _fmt(x: float | None, ci: tuple[float, float] | None = None) -> str:
    if x is None or math.isnan(x):
        return "–"
    s = f"{x:.3f}"
    if ci is not None:
        s += f" [dim]({ci[0]:.2f}…{ci[1]:.2f})[/]"
    return s


def render(loaded: LoadedResult, console: Console) -> None:
    """Print one result as a rich table: rows, then category means, then the suite mean."""
    from rich.table import Table

    res = loaded.result
    model = res.model.get("name") if res.model else None
    title = f"{res.intervention} on {res.suite}" + (f" — {model}" if model else "")
    sub = (
        f"{loaded.path}"
        + (f" · TTC {res.ttc}" if res.ttc else "")
        + (f" · limit {res.limit}" if res.limit else "")
    )
    caption = sub + " · DE = differential elicitation, (…) = 95% bootstrap CI"
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    table.add_column("shift", overflow="fold")
    table.add_column("category")
    for _, header in MEAN_COLUMNS:
        table.add_column(header, justify="right")
    table.add_column("TTC by")
    paper = bool(loaded.paper)
    if paper:
        table.add_column("paper gen", justify="right", style="magenta")
        table.add_column("paper DE", justify="right", style="magenta")

    for r in res.rows:
        shift = f"{r.source} → {r.target}" + (
            f" @{r.target_reference}" if r.target_reference != r.target else ""
        )
        cells = [
            _fmt(r.generalization_accuracy, r.generalization_accuracy_ci),
            _fmt(r.baseline_accuracy),
            _fmt(r.target_tuned_capability),
            _fmt(r.source_ID_accuracy),
            _fmt(r.RMS_calibration_error),
            _fmt(r.differential_elicitation, r.differential_elicitation_ci),
        ]
        row = [shift, r.category or "", *cells, r.target_tuned_capability_intervention or ""]
        if paper:
            pv = loaded.paper.get((r.source, r.target), {})
            row += [_fmt(pv.get("generalization_accuracy")), _fmt(pv.get("differential_elicitation"))]
        table.add_row(*row)

    def add_mean(label: str, rows: Sequence[ShiftResult], style: str) -> None:
        m = means(rows)
        row = [label, f"{len(rows)} shifts", *(_fmt(m[c]) for c, _ in MEAN_COLUMNS), ""]
        if paper:
            pvs = [loaded.paper.get((r.source, r.target), {}) for r in rows]
            row += [_fmt(_mean(p.get(c) for p in pvs)) for c in PAPER_COLUMNS]
        table.add_row(*row, style=style)

    cats: dict[str, list[ShiftResult]] = {}
    for r in res.rows:
        cats.setdefault(r.category or "uncategorized", []).append(r)
    if len(cats) > 1:
        table.add_section()
        for cat, rows in cats.items():
            add_mean(f"mean: {cat}", rows, "bold")
    table.add_section()
    add_mean(f"mean: {res.suite}", res.rows, "bold cyan")
    console.print(table)


def render_suite_result(result: SuiteResult, console: Console, path: Path | None = None) -> None:
    """Render a SuiteResult that is in memory (``genies run`` prints its own result this way)."""
    render(LoadedResult(path or Path(f"{result.suite}.json"), result), console)


def show(
    paths: Sequence[Path],
    *,
    suite: str | None = None,
    as_json: bool = False,
    paper_model: str | None = None,
    store: str | Path | None = None,
    console: Console | None = None,
) -> None:
    """``genies results table``: load, optionally attach the paper's numbers, print tables or JSON."""
    from rich.console import Console as _Console

    loaded = load_results(paths, suite)
    if paper_model:
        for lr in loaded:
            attach_paper(lr, paper_model, store)
    if as_json:
        text = _json_text([summary_json(lr) for lr in loaded])
        if console is None:
            print(text)
        else:
            console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    con = console or _Console()
    for lr in loaded:
        render(lr, con)


def _json_text(obj: Any) -> str:
    """JSON text with NaN written as null (tables are for people and tools, not for Python only)."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(obj), indent=2)
