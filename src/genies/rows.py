"""One row builder and one CSV writer, for ``genies run`` and for the paper's tables.

A row of a results table is one distribution shift: the generalization, baseline, target-tuned and
source-ID accuracies, the calibration error and

    differential_elicitation = (generalization − baseline) / target_tuned_capability.

``build_row`` takes each role as a ``Cell`` (the accuracy to show, the record behind it) and fills a
``ShiftResult``: the 11 upstream columns, bootstrap CIs when the records carry per-pair probabilities,
and the evaluation keys. It refuses to compare evaluations of one distribution that scored different
pairs (genies records carry their pair ids; the paper's imported records do not, and their stored
numbers are compared as the paper did). ``csv_text`` / ``write_csv`` write the upstream CSV: exactly
its 11 columns in its order, as pandas writes them (no index; missing values are empty cells).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genies.errors import StoreError
from genies.records import UPSTREAM_CSV_COLUMNS, EvaluationRecord, ShiftResult

CI_RESAMPLES = 2000


@dataclass(frozen=True)
class Cell:
    """One role of a row: the accuracy shown, and the evaluation record behind it (if any)."""

    accuracy: float | None
    record: EvaluationRecord | None = None

    @classmethod
    def of(cls, record: EvaluationRecord | None, metric: str = "accuracy") -> Cell:
        if record is None:
            return cls(None)
        value = record.metrics.get(metric)
        return cls(None if value is None or math.isnan(value) else float(value), record)

    @property
    def p(self) -> list[float]:
        return list(self.record.p_correct) if self.record is not None else []


@dataclass(frozen=True)
class CIPolicy:
    """How bootstrap intervals are computed: ties policy, resamples, seed."""

    tie_policy: str = "half"
    n_resamples: int = CI_RESAMPLES
    seed: int = 0


def pick_best(candidates: Mapping[str, float | None]) -> str:
    """The winning candidate: highest value, the first listed on ties; missing or NaN never wins."""
    best, best_value = next(iter(candidates)), -math.inf
    for name, value in candidates.items():
        if value is not None and not math.isnan(value) and value > best_value:
            best, best_value = name, value
    return best


def _none_if_nan(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _interval(pair: tuple[float, float]) -> tuple[float, float] | None:
    return None if any(math.isnan(v) for v in pair) else (float(pair[0]), float(pair[1]))


def check_same_pairs(shift: Any, cells: Mapping[str, tuple[str, Cell]]) -> None:
    """Refuse to compare evaluations of one distribution that scored different pairs.

    ``cells`` maps a role to (the distribution it was evaluated on, its cell).
    """
    seen: dict[str, tuple[str, list[str]]] = {}
    for role, (dist, cell) in cells.items():
        rec = cell.record
        if rec is None or rec.origin != "genies":
            continue
        if dist in seen and seen[dist][1] != rec.pair_ids:
            raise StoreError(
                f"row {shift.source} → {shift.target}: the {seen[dist][0]} and {role} evaluations of {dist} "
                f"scored different pairs ({len(seen[dist][1])} vs {len(rec.pair_ids)}); they cannot be compared"
            )
        seen.setdefault(dist, (role, list(rec.pair_ids)))


def build_row(
    shift: Any,
    target_reference: str,
    *,
    generalization: Cell,
    baseline: Cell,
    target_tuned: Cell,
    source: Cell,
    baseline_intervention: str | None,
    ttc_intervention: str | None,
    rms_calibration_error: float | None,
    extra: Mapping[str, float] | None = None,
    keys: Mapping[str, str] | None = None,
    ci: CIPolicy | None = None,
    ci_cache: dict[tuple[Any, ...], Any] | None = None,
) -> ShiftResult:
    """One ``ShiftResult`` (see the module docstring)."""
    from genies import metrics

    check_same_pairs(
        shift,
        {
            "generalization": (shift.target, generalization),
            "baseline": (shift.target, baseline),
            "target-tuned": (target_reference, target_tuned),
            "source": (shift.source, source),
        },
    )
    de = metrics.differential_elicitation(generalization.accuracy, baseline.accuracy, target_tuned.accuracy)
    row = ShiftResult(
        source=shift.source,
        target=shift.target,
        target_reference=target_reference,
        category=getattr(shift, "category", None),
        group=getattr(shift, "group", None),
        generalization_accuracy=generalization.accuracy,
        baseline_accuracy=baseline.accuracy,
        baseline_intervention=baseline_intervention,
        target_tuned_capability=target_tuned.accuracy,
        target_tuned_capability_intervention=ttc_intervention,
        source_ID_accuracy=source.accuracy,
        RMS_calibration_error=_none_if_nan(rms_calibration_error),
        differential_elicitation=_none_if_nan(de),
        extra_metrics=dict(extra or {}),
        evaluation_keys=dict(keys or {}),
    )
    if ci is not None and generalization.p:
        cache = ci_cache if ci_cache is not None else {}
        kw = {"tie_policy": ci.tie_policy, "n_resamples": ci.n_resamples, "seed": ci.seed}
        gen_id = generalization.record.key if generalization.record else id(generalization)
        if ("acc", gen_id) not in cache:
            cache[("acc", gen_id)] = _interval(metrics.bootstrap_accuracy_ci(generalization.p, **kw))
        row.generalization_accuracy_ci = cache[("acc", gen_id)]
        ttc_value: Any = target_tuned.p or target_tuned.accuracy
        if baseline.p and target_tuned.accuracy:
            ids = (gen_id, baseline.record.key if baseline.record else None, _ttc_id(target_tuned))
            if ("de", ids) not in cache:
                cache[("de", ids)] = _interval(
                    metrics.bootstrap_de_ci(generalization.p, baseline.p, ttc_value, **kw)
                )
            row.differential_elicitation_ci = cache[("de", ids)]
    return row


def _ttc_id(cell: Cell) -> Any:
    return cell.record.key if cell.record is not None and cell.record.p_correct else ("fixed", cell.accuracy)


def csv_text(rows: Sequence[ShiftResult]) -> str:
    """The 11 upstream columns, in order, as pandas writes them (no index; missing → empty cell)."""
    import pandas as pd

    frame = pd.DataFrame(
        [{c: getattr(r, c) for c in UPSTREAM_CSV_COLUMNS} for r in rows], columns=list(UPSTREAM_CSV_COLUMNS)
    )
    return frame.to_csv(index=False)


def write_csv(rows: Sequence[ShiftResult], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as an upstream-format CSV, atomically."""
    from genies.io import atomic_write_text

    atomic_write_text(path, csv_text(rows))
    return Path(path)
