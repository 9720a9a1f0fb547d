"""Assemble a suite's rows from stored evaluations and write ``<out>/<suite>.csv`` and ``.json``.

The CSV has exactly upstream's 11 columns in upstream's order (records.UPSTREAM_CSV_COLUMNS), one row
per shift of the suite as listed (``all-paper`` keeps its 69 rows, duplicates included). The JSON is
the typed ``records.SuiteResult`` with everything else: categories, bootstrap CIs, upstream-policy
variants of the accuracies, the TTC candidates' accuracies and the evaluation keys of each row.

Accuracies count ties as half (genies' default, upstream-reference §5.2); the ``*_upstream`` extras
count ties as correct, as the paper's tables did. ``RMS_calibration_error`` is the correct binned RMS
calibration error; the paper's bug-compatible value is in ``extra_metrics.rms_calibration_error_upstream``.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genies.errors import StoreError
from genies.io import atomic_path, atomic_write_json
from genies.pipeline.config import TTCSpec
from genies.pipeline.plan import Plan
from genies.records import UPSTREAM_CSV_COLUMNS, EvaluationRecord, ShiftResult, SuiteResult

CI_RESAMPLES = 2000


def model_slug(name: str) -> str:
    """A folder-safe name for a model alias, hub id or local path (its last component)."""
    last = Path(name.rstrip("/\\")).name or name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-") or "model"


def suite_slug(suite: str) -> str:
    """The output file stem of a suite: its name, or a suite file's stem."""
    p = Path(suite)
    stem = p.stem if p.suffix.lower() == ".json" else p.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "suite"


def default_out_dir(model: str, intervention: str) -> Path:
    return Path("genies-results") / model_slug(model) / intervention


def check_out_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written there (before any expensive work)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".genies-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreError(f"output directory {out} is not writable: {exc.strerror or exc}") from None


def _acc(rec: EvaluationRecord, key: str = "accuracy") -> float:
    return float(rec.metrics.get(key, math.nan))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _ci(pair: tuple[float, float]) -> tuple[float, float] | None:
    return None if any(math.isnan(v) for v in pair) else (float(pair[0]), float(pair[1]))


def pick_ttc(candidates: Mapping[str, EvaluationRecord], key: str = "accuracy") -> str:
    """The winning TTC intervention: highest accuracy, the first listed on ties, NaN never wins."""
    best, best_acc = next(iter(candidates)), -math.inf
    for name, rec in candidates.items():
        acc = _acc(rec, key)
        if not math.isnan(acc) and acc > best_acc:
            best, best_acc = name, acc
    return best


def build_suite_result(
    plan: Plan,
    records: Mapping[str, EvaluationRecord],
    *,
    suite: str,
    intervention: str,
    intervention_config: dict[str, Any],
    baseline_intervention: str,
    ttc: TTCSpec,
    model: dict[str, Any],
    seed: int,
    limit: int | None,
    versions: dict[str, str],
    ci_resamples: int = CI_RESAMPLES,
) -> SuiteResult:
    """One ShiftResult per planned row, with bootstrap CIs seeded from the run's seed."""
    from genies import metrics

    rows: list[ShiftResult] = []
    # Suites with duplicated rows (all-paper) ask for the same intervals again: compute each once.
    ci_cache: dict[tuple[str, ...], tuple[float, float] | None] = {}
    ci_kw = {"n_resamples": ci_resamples, "seed": seed}

    def acc_ci(gen: EvaluationRecord) -> tuple[float, float] | None:
        if (gen.key,) not in ci_cache:
            ci_cache[(gen.key,)] = _ci(metrics.bootstrap_accuracy_ci(gen.p_correct, **ci_kw))
        return ci_cache[(gen.key,)]

    def de_ci(
        gen: EvaluationRecord, base: EvaluationRecord, tt: EvaluationRecord
    ) -> tuple[float, float] | None:
        key = (gen.key, base.key, tt.key)
        if key not in ci_cache:
            ci_cache[key] = _ci(metrics.bootstrap_de_ci(gen.p_correct, base.p_correct, tt.p_correct, **ci_kw))
        return ci_cache[key]

    for rp in plan.rows:
        s = rp.shift
        gen, base, src = records[rp.generalization], records[rp.baseline], records[rp.source_id]
        cands = {name: records[k] for name, k in rp.ttc.items()}
        winner = pick_ttc(cands)
        tt = cands[winner]
        de = metrics.differential_elicitation(_acc(gen), _acc(base), _acc(tt))
        up = "accuracy_upstream"
        tt_up = cands[pick_ttc(cands, up)]
        extra: dict[str, float] = {
            "generalization_accuracy_upstream": _acc(gen, up),
            "baseline_accuracy_upstream": _acc(base, up),
            "target_tuned_capability_upstream": _acc(tt_up, up),
            "source_ID_accuracy_upstream": _acc(src, up),
            "differential_elicitation_upstream": metrics.differential_elicitation(
                _acc(gen, up), _acc(base, up), _acc(tt_up, up)
            ),
            "rms_calibration_error_upstream": _acc(gen, "rms_calibration_error_upstream"),
            "brier_score": _acc(gen, "brier_score"),
            "average_probability": _acc(gen, "average_probability"),
            "ece": _acc(gen, "ece"),
            "tie_rate": _acc(gen, "tie_rate"),
            "n_generalization": float(gen.n),
            "n_baseline": float(base.n),
            "n_target_tuned": float(tt.n),
            "n_source": float(src.n),
            "dropped_generalization": float(gen.dropped),
        }
        if ttc.mode == "best-of":
            for name, rec in cands.items():
                extra[f"target_tuned_accuracy.{name}"] = _acc(rec)
        keys = {
            "generalization": rp.generalization,
            "baseline": rp.baseline,
            "ttc": rp.ttc[winner],
            "source_id": rp.source_id,
        }
        if ttc.mode == "best-of":
            keys.update({f"ttc.{name}": k for name, k in rp.ttc.items()})
        rows.append(
            ShiftResult(
                source=s.source,
                target=s.target,
                target_reference=rp.target_reference,
                category=getattr(s, "category", None),
                group=getattr(s, "group", None),
                generalization_accuracy=_nan_to_none(_acc(gen)),
                baseline_accuracy=_nan_to_none(_acc(base)),
                baseline_intervention=baseline_intervention,
                target_tuned_capability=_nan_to_none(_acc(tt)),
                target_tuned_capability_intervention=winner,
                source_ID_accuracy=_nan_to_none(_acc(src)),
                RMS_calibration_error=_nan_to_none(_acc(gen, "rms_calibration_error")),
                differential_elicitation=_nan_to_none(de),
                generalization_accuracy_ci=acc_ci(gen),
                differential_elicitation_ci=de_ci(gen, base, tt),
                extra_metrics=extra,
                evaluation_keys=keys,
            )
        )
    return SuiteResult(
        suite=suite,
        intervention=intervention,
        intervention_config=intervention_config,
        baseline_intervention=baseline_intervention,
        ttc=ttc.label,
        ttc_interventions=list(ttc.interventions),
        model=model,
        seed=seed,
        limit=limit,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=versions,
        rows=rows,
    )


def upstream_frame(result: SuiteResult):
    """The 11 upstream columns as a pandas DataFrame (missing values empty in CSV)."""
    import pandas as pd

    data = [{c: getattr(r, c) for c in UPSTREAM_CSV_COLUMNS} for r in result.rows]
    return pd.DataFrame(data, columns=list(UPSTREAM_CSV_COLUMNS))


def write_outputs(result: SuiteResult, out: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out>/<name>.csv`` (upstream columns) and ``<out>/<name>.json`` atomically."""
    csv_path, json_path = out / f"{name}.csv", out / f"{name}.json"
    try:
        with atomic_path(csv_path) as tmp:
            upstream_frame(result).to_csv(tmp, index=False)
        atomic_write_json(json_path, result.model_dump(mode="json"))
    except OSError as exc:
        raise StoreError(f"cannot write results to {out}: {exc.strerror or exc}") from None
    return csv_path, json_path
