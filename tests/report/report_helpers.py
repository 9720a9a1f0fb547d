"""Constructed results for the report tests: evaluation records in a store and suite JSONs over them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from genies import metrics
from genies.records import EvaluationRecord, ShiftResult, SuiteResult


def write_record(
    store: Path, intervention: str, dist: str, p: list[float], *, train: str | None = None, pair_ids=None
) -> str:
    """Store one genies evaluation record and return its key."""
    ids = pair_ids if pair_ids is not None else [f"{i}/1" for i in range(len(p))]
    key = hashlib.sha256(json.dumps([intervention, dist, train, p, ids]).encode()).hexdigest()[:32]
    rec = EvaluationRecord(
        key=key,
        intervention=intervention,
        model={"name": "tiny"},
        train_distribution=train,
        eval_distribution=dist,
        pair_ids=ids,
        p_correct=p,
        n=len(p),
        metrics=metrics.summarize(p),
        metrics_version=metrics.METRICS_VERSION,
    )
    path = store / "evaluations" / key[:2] / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec.model_dump()), encoding="utf-8")  # NaN kept, as the store writes
    return key


def probs(rng: np.random.Generator, n: int, acc: float) -> list[float]:
    """n p(correct) values, a fraction ``acc`` of them above ½ (no ties)."""
    right = rng.random(n) < acc
    conf = 0.5 + 0.49 * rng.random(n) + 1e-3
    return [float(c if r else 1 - c) for r, c in zip(right, np.minimum(conf, 0.999), strict=True)]


def write_result(
    out: Path,
    store: Path,
    intervention: str,
    shifts: list[tuple[str, str, str]],
    gen: dict[str, list[float]],
    base: dict[str, list[float]],
    ttc: dict[str, list[float]],
    *,
    suite: str = "test",
    pair_ids: dict[str, list[str]] | None = None,
) -> Path:
    """A suite result over ``shifts`` (source, target, category) whose rows point at stored records."""
    rows = []
    for src, tgt, cat in shifts:
        ids = (pair_ids or {}).get(tgt)
        kg = write_record(store, intervention, tgt, gen[tgt], train=src, pair_ids=ids)
        kb = write_record(store, "zero_shot", tgt, base[tgt], pair_ids=ids)
        kt = write_record(store, "ref", tgt, ttc[tgt], train=tgt)
        g, b, t = (metrics.accuracy(x) for x in (gen[tgt], base[tgt], ttc[tgt]))
        rows.append(
            ShiftResult(
                source=src,
                target=tgt,
                target_reference=tgt,
                category=cat,
                generalization_accuracy=g,
                baseline_accuracy=b,
                target_tuned_capability=t,
                differential_elicitation=(g - b) / t,
                generalization_accuracy_ci=metrics.bootstrap_accuracy_ci(gen[tgt]),
                evaluation_keys={"generalization": kg, "baseline": kb, "ttc": kt},
            )
        )
    res = SuiteResult(
        suite=suite,
        intervention=intervention,
        model={"name": "tiny"},
        limit=None,
        rows=rows,
        versions={"genies": "test", "git_commit": "abc123"},
    )
    path = out / intervention / f"{suite}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(res.model_dump_json(), encoding="utf-8")
    return path
