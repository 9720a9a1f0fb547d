"""Results tables: per-shift rows, per-category means and suite means of ``genies run`` outputs.

Reads ``<suite>.json`` (records.SuiteResult) or any CSV with the 11 upstream columns (ours or the
paper's), or folders holding them. Means are plain means over the rows as listed (a suite with
duplicated rows, such as all-paper, weights them as upstream's tables do), skipping missing values;
every mean says over how many rows it was taken, per column (``counts`` in JSON, "(10/15)" in the
table), since a column with missing values averages fewer shifts than the suite has.
Optionally puts the paper's numbers for the same shifts beside each row.

Terminals too narrow for the wide table (e.g. 40 columns) get a stacked layout: one block per shift
with one metric per line, so no number is cut to "…" and no shift name is folded one letter a line.
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
    from rich.table import Table

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


def _cell(value: Any, path: Path, line: int, column: str) -> float | None:
    """A numeric CSV cell: empty → None; anything that is not a finite number is a DataError."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or isinstance(value, bool):
        raise DataError(f"{path}: line {line}: {column} is not a number: {str(value)[:40]!r}")
    return x


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
        df = pd.read_csv(path, dtype=str)  # cells parsed below, so "abc" or "true" is an error
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read results CSV {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in UPSTREAM_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path} is not a results table: missing column {missing[0]!r}")
    rows = []
    for line, rec in enumerate(df.to_dict("records"), start=2):  # line 1 is the header
        names = {c: _text(rec[c]) for c in ("source", "target", "target_reference")}
        for c, name in names.items():
            if name is None or not name.strip():
                raise DataError(f"{path}: line {line}: {c} is empty")
        cat, group = _category(names["source"], names["target"])  # type: ignore[arg-type]
        rows.append(
            ShiftResult(
                **names,  # type: ignore[arg-type]
                category=cat,
                group=group,
                **{c: _cell(rec[c], path, line, c) for c, _ in MEAN_COLUMNS},
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
    except (OSError, ValueError):  # unreadable, or not UTF-8: not one of ours
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


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


def _mean(values: Iterable[float | None]) -> float | None:
    xs = _present(values)
    return sum(xs) / len(xs) if xs else None


def means(rows: Sequence[ShiftResult]) -> dict[str, float | None]:
    """Per column, the mean over the rows that have a value (None when none has)."""
    return {c: _mean(getattr(r, c) for r in rows) for c, _ in MEAN_COLUMNS}


def mean_counts(rows: Sequence[ShiftResult]) -> dict[str, int]:
    """Per column, how many of ``rows`` its mean averages (rows with a missing value are skipped)."""
    return {c: len(_present(getattr(r, c) for r in rows)) for c, _ in MEAN_COLUMNS}


def mean_summary(rows: Sequence[ShiftResult]) -> dict[str, Any]:
    """``{"rows": N, "counts": {column: rows averaged}, column: mean, …}`` for JSON output."""
    return {"rows": len(rows), "counts": mean_counts(rows), **means(rows)}


def _by_category(rows: Sequence[ShiftResult]) -> dict[str, list[ShiftResult]]:
    cats: dict[str, list[ShiftResult]] = {}
    for r in rows:
        cats.setdefault(r.category or "uncategorized", []).append(r)
    return cats


def category_means(rows: Sequence[ShiftResult]) -> dict[str, dict[str, Any]]:
    return {c: mean_summary(rs) for c, rs in _by_category(rows).items()}


def _paper_for(loaded: LoadedResult, rows: Sequence[ShiftResult]) -> list[dict[str, float | None]]:
    return [loaded.paper.get((r.source, r.target), {}) for r in rows]


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
        "suite_mean": mean_summary(res.rows),
    }
    if loaded.paper:
        doc["paper"] = [{"source": s, "target": t, **vals} for (s, t), vals in loaded.paper.items()]
        pvs = _paper_for(loaded, res.rows)
        doc["paper_suite_mean"] = {
            "rows": len(res.rows),
            "counts": {c: len(_present(p.get(c) for p in pvs)) for c in PAPER_COLUMNS},
            **{c: _mean(p.get(c) for p in pvs) for c in PAPER_COLUMNS},
        }
    return doc


# ------------------------------------------------------------------------------------------- rendering


def _fmt(x: float | None, ci: tuple[float, float] | None = None) -> str:
    if x is None or math.isnan(x):
        return "–"
    s = f"{x:.3f}"
    if ci is not None:
        s += f" [dim]({ci[0]:.2f}…{ci[1]:.2f})[/]"
    return s


def _fmt_mean(x: float | None, count: int, total: int) -> str:
    """A mean cell; "(k/n)" when it averages only k of the n rows (the others lack the value)."""
    return _fmt(x) + (f" [dim]({count}/{total})[/]" if count < total else "")


def _shift_label(r: ShiftResult) -> str:
    ref = f" @{r.target_reference}" if r.target_reference != r.target else ""
    return f"{r.source} → {r.target}{ref}"


def _row_cells(r: ShiftResult) -> list[str]:
    return [
        _fmt(r.generalization_accuracy, r.generalization_accuracy_ci),
        _fmt(r.baseline_accuracy),
        _fmt(r.target_tuned_capability),
        _fmt(r.source_ID_accuracy),
        _fmt(r.RMS_calibration_error),
        _fmt(r.differential_elicitation, r.differential_elicitation_ci),
    ]


def _titles(loaded: LoadedResult) -> tuple[str, str]:
    res = loaded.result
    model = res.model.get("name") if res.model else None
    title = f"{res.intervention} on {res.suite}" + (f" — {model}" if model else "")
    sub = (
        f"{loaded.path}"
        + (f" · TTC {res.ttc}" if res.ttc else "")
        + (f" · limit {res.limit}" if res.limit else "")
    )
    return title, sub


def _partial_notes(label: str, rows: Sequence[ShiftResult]) -> list[str]:
    """E.g. "mean: genies — DE mean over 10 of 15 shifts" for every column that lacks values."""
    counts, n = mean_counts(rows), len(rows)
    headers = dict(MEAN_COLUMNS)
    return [
        f"{label} — {headers[c]} mean over {k} of {n} shift{'s' * (n != 1)}"
        for c, k in counts.items()
        if k < n
    ]


def _mean_groups(res: SuiteResult) -> list[tuple[str, list[ShiftResult], str]]:
    """(label, rows, style) of every mean row: per category (when there are several), then the suite."""
    cats = _by_category(res.rows)
    groups = [(f"mean: {c}", rs, "bold") for c, rs in cats.items()] if len(cats) > 1 else []
    return [*groups, (f"mean: {res.suite}", list(res.rows), "bold cyan")]


def wide_table(loaded: LoadedResult) -> Table:
    """The full table: one row per shift, then category means and the suite mean."""
    from rich.table import Table

    res = loaded.result
    title, sub = _titles(loaded)
    notes = [sub + " · DE = differential elicitation, (…) = 95% bootstrap CI"]
    if any(k < len(res.rows) for k in mean_counts(res.rows).values()):
        notes.append("(k/n) = a mean over only the k of n shifts that have the value")
        notes += _partial_notes(f"mean: {res.suite}", res.rows)
    table = Table(title=title, caption="\n".join(notes), title_justify="left", caption_justify="left")
    table.add_column("shift", overflow="fold")
    table.add_column("category", overflow="fold")
    for _, header in MEAN_COLUMNS:  # numbers never wrap: the layout switches to stacked instead
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("TTC by", overflow="fold")
    paper = bool(loaded.paper)
    if paper:
        table.add_column("paper gen", justify="right", style="magenta", no_wrap=True)
        table.add_column("paper DE", justify="right", style="magenta", no_wrap=True)

    for r in res.rows:
        row = [
            _shift_label(r),
            r.category or "",
            *_row_cells(r),
            r.target_tuned_capability_intervention or "",
        ]
        if paper:
            pv = loaded.paper.get((r.source, r.target), {})
            row += [_fmt(pv.get("generalization_accuracy")), _fmt(pv.get("differential_elicitation"))]
        table.add_row(*row)

    groups = _mean_groups(res)
    for i, (label, rows, style) in enumerate(groups):
        if i == 0 or i == len(groups) - 1:
            table.add_section()
        m, counts, n = means(rows), mean_counts(rows), len(rows)
        row = [
            label,
            f"{n} shift{'s' * (n != 1)}",
            *(_fmt_mean(m[c], counts[c], n) for c, _ in MEAN_COLUMNS),
            "",
        ]
        if paper:
            pvs = _paper_for(loaded, rows)
            row += [
                _fmt_mean(_mean(p.get(c) for p in pvs), len(_present(p.get(c) for p in pvs)), n)
                for c in PAPER_COLUMNS
            ]
        table.add_row(*row, style=style)
    return table


def _fits(console: Console, table: Table) -> bool:
    """Whether ``table`` fits the console without cutting a number (its minimum width fits)."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(1 << 20)  # measure the table, not the console
    return Measurement.get(console, unbounded, table).minimum <= console.width


def _stacked(loaded: LoadedResult, console: Console) -> None:
    """The narrow layout: a block per shift and per mean, one ``label value`` line per metric."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    res = loaded.result
    title, sub = _titles(loaded)
    console.print(Text(title, style="bold"))
    console.print(Text(sub + " · DE = differential elicitation, (…) = 95% bootstrap CI", style="dim"))
    labels = [h for _, h in MEAN_COLUMNS]

    label_width = max(len(h) for h in [*labels, "category", "TTC by", "paper gen"])

    def block(head: str, values: list[tuple[str, str]], style: str = "bold") -> None:
        console.print()
        console.print(Text(head, style=style))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="dim", min_width=label_width)
        grid.add_column(overflow="fold")
        for k, v in values:
            grid.add_row(k, v)
        console.print(Padding(grid, (0, 0, 0, 2), expand=False))

    for r in res.rows:
        values = list(zip(labels, _row_cells(r), strict=True))
        if r.category:
            values.insert(0, ("category", r.category))
        values.append(("TTC by", r.target_tuned_capability_intervention or "–"))
        if loaded.paper:
            pv = loaded.paper.get((r.source, r.target), {})
            values += [
                ("paper gen", _fmt(pv.get("generalization_accuracy"))),
                ("paper DE", _fmt(pv.get("differential_elicitation"))),
            ]
        block(_shift_label(r), values)
    for label, rows, style in _mean_groups(res):
        m, counts, n = means(rows), mean_counts(rows), len(rows)
        values = [
            (h, _fmt(m[c]) + (f" [dim](over {counts[c]} of {n})[/]" if counts[c] < n else ""))
            for c, h in MEAN_COLUMNS
        ]
        block(f"{label} ({n} shift{'s' * (n != 1)})", values, style)


def render(loaded: LoadedResult, console: Console) -> None:
    """Print one result: the wide table when it fits the console, else the stacked layout."""
    table = wide_table(loaded)
    if _fits(console, table):
        console.print(table)
    else:
        _stacked(loaded, console)


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
