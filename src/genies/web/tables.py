"""Results tables as plain data: rows of ``genies run`` outputs, filtered, sorted, with means.

Nothing here knows about HTTP or HTML: ``results_table`` turns loaded ``SuiteResult``s into a
``Table`` (columns, formatted-ready values, the filter choices, per-category and overall means), and
the browser's ``_table.html`` macro draws it. The HTML report (issue 12, item 2) is meant to build its
suite table from the same function, so that the page and the file show the same numbers; it depends
only on ``genies.records`` and the means of ``genies.report.table``.

Means follow ``genies results table``: plain means over the rows as listed, skipping missing values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genies.records import ShiftResult, SuiteResult
from genies.report.table import MEAN_COLUMNS, means


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False
    title: str = ""  # tooltip


#: Metric columns after the descriptive ones; headers as in ``genies results table``.
METRIC_TITLES = {
    "generalization_accuracy": "accuracy on the target's test split after training on the source",
    "baseline_accuracy": "the baseline intervention's accuracy on the target",
    "target_tuned_capability": "accuracy when trained on the target (reference) itself",
    "source_ID_accuracy": "in-distribution accuracy on the source's test split",
    "RMS_calibration_error": "RMS calibration error on the target",
    "differential_elicitation": "(generalization − baseline) / target-tuned capability",
}
DESCRIPTIVE = (
    Column("intervention", "intervention"),
    Column("model", "model"),
    Column("suite", "suite"),
    Column("shift", "shift"),
    Column("category", "category"),
)
METRICS = tuple(Column(k, h, True, METRIC_TITLES[k]) for k, h in MEAN_COLUMNS)
COLUMNS: tuple[Column, ...] = DESCRIPTIVE + METRICS
SORT_KEYS = frozenset(c.key for c in COLUMNS)


@dataclass
class Row:
    """One shift of one result."""

    result_id: str  # which results file (its path relative to the results folder)
    intervention: str
    model: str
    suite: str
    source: str
    target: str
    reference: str
    category: str
    values: dict[str, float | None]
    cis: dict[str, tuple[float, float]]
    ttc_by: str | None
    keys: dict[str, str] = field(default_factory=dict)  # role -> evaluation key (generalization, ...)

    @property
    def shift(self) -> str:
        base = f"{self.source} → {self.target}"
        return base if self.reference == self.target else f"{base} @{self.reference}"

    def get(self, key: str) -> Any:
        return self.values[key] if key in self.values else getattr(self, key)


@dataclass
class MeanRow:
    label: str
    n: int
    values: dict[str, float | None]


@dataclass
class Pivot:
    """Mean of one metric per category (rows) and result (columns)."""

    metric: str
    header: str
    categories: list[str]
    groups: list[str]
    cells: dict[tuple[str, str], float | None]  # (category, group) -> mean; absent: no rows


@dataclass
class Table:
    columns: tuple[Column, ...]
    rows: list[Row]
    sort: str | None
    descending: bool
    filters: dict[str, str | None]  # the filters applied (None: all)
    choices: dict[str, list[str]]  # the values each filter offers (over all rows, unfiltered)
    category_means: list[MeanRow] = field(default_factory=list)  # per (intervention, category)
    overall_means: list[MeanRow] = field(default_factory=list)  # per result
    pivots: list[Pivot] = field(default_factory=list)  # DE and generalization accuracy by category


def model_name(result: SuiteResult) -> str:
    m = result.model or {}
    return str(m.get("name") or m.get("path") or "?")


def _clean(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def rows_of(result_id: str, result: SuiteResult) -> list[Row]:
    out = []
    for r in result.rows:
        cis = {}
        if r.generalization_accuracy_ci is not None:
            cis["generalization_accuracy"] = r.generalization_accuracy_ci
        if r.differential_elicitation_ci is not None:
            cis["differential_elicitation"] = r.differential_elicitation_ci
        out.append(
            Row(
                result_id=result_id,
                intervention=result.intervention,
                model=model_name(result),
                suite=result.suite,
                source=r.source,
                target=r.target,
                reference=r.target_reference,
                category=r.category or "uncategorized",
                values={c.key: _clean(getattr(r, c.key)) for c in METRICS},
                cis=cis,
                ttc_by=r.target_tuned_capability_intervention,
                keys=dict(r.evaluation_keys),
            )
        )
    return out


def sort_rows(rows: Sequence[Row], key: str, descending: bool = False) -> list[Row]:
    """Rows ordered by column ``key``; missing values last in either direction, ties as listed."""
    numeric = next((c.numeric for c in COLUMNS if c.key == key), False)
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]

    def value(r: Row) -> Any:
        return r.get(key) if numeric else str(r.get(key)).casefold()

    return sorted(present, key=value, reverse=descending) + missing


def _means_of(rows: Sequence[Row]) -> dict[str, float | None]:
    as_results = [
        ShiftResult(source=r.source, target=r.target, target_reference=r.reference, **r.values) for r in rows
    ]
    return means(as_results)


def _group(row: Row) -> str:
    return f"{row.model} · {row.intervention} · {row.suite}"


def pivot(rows: Sequence[Row], metric: str) -> Pivot:
    """Per-category means of ``metric`` with one column per result, categories in registry order."""
    from genies.shifts import CATEGORIES

    header = next(c.header for c in METRICS if c.key == metric)
    groups = list(dict.fromkeys(_group(r) for r in rows))
    present = {r.category for r in rows}
    cats = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    cells: dict[tuple[str, str], float | None] = {}
    for cat in cats:
        for g in groups:
            vals = [r.values[metric] for r in rows if r.category == cat and _group(r) == g]
            if vals:
                xs = [v for v in vals if v is not None]
                cells[(cat, g)] = sum(xs) / len(xs) if xs else None
    return Pivot(metric, header, cats, groups, cells)


def results_table(
    results: Sequence[tuple[str, SuiteResult]],
    *,
    category: str | None = None,
    intervention: str | None = None,
    suite: str | None = None,
    model: str | None = None,
    sort: str | None = None,
    descending: bool = False,
) -> Table:
    """The rows of ``results`` (``(result_id, SuiteResult)`` pairs) filtered, sorted, with means.

    Filters keep rows whose value equals the one given (None keeps all). ``sort`` is a column key
    (see ``COLUMNS``); unknown keys leave the listed order. Text columns sort ascending unless
    ``descending``.
    """
    all_rows = [row for rid, res in results for row in rows_of(rid, res)]
    filters = {"category": category, "intervention": intervention, "suite": suite, "model": model}
    choices = {k: sorted({str(getattr(r, k)) for r in all_rows}) for k in filters}
    rows = [r for r in all_rows if all(v is None or getattr(r, k) == v for k, v in filters.items())]
    if sort in SORT_KEYS:
        rows = sort_rows(rows, sort, descending)
    else:
        sort = None

    groups: dict[tuple[str, str], list[Row]] = {}
    per_result: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault((_group(r), r.category), []).append(r)
        per_result.setdefault(_group(r), []).append(r)
    cat_means = [
        MeanRow(f"{who} · {cat}", len(rs), _means_of(rs)) for (who, cat), rs in sorted(groups.items())
    ]
    overall = [MeanRow(who, len(rs), _means_of(rs)) for who, rs in per_result.items()]
    pivots = [pivot(rows, m) for m in ("differential_elicitation", "generalization_accuracy")] if rows else []
    return Table(COLUMNS, rows, sort, descending, filters, choices, cat_means, overall, pivots)
