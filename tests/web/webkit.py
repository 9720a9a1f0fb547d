"""Builders for the browser tests: a small data store, evaluation records and suite results.

The p(correct) values and result rows made here are test inputs (fixed by a seed), not results.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from genies.data import load_distribution
from genies.data.store import import_data
from genies.records import EvaluationRecord, ShiftResult, SuiteResult

XSS = "<script>alert(1)</script>"
HTML_RESPONSE = '<b>bold</b> <img src=x onerror="alert(2)"> </pre></li></ol><h1>escaped?</h1>'
CODE_RESPONSE = (
    "def f(x):\n    return x < 3 and x > 1  # {{ 7*7 }} {% raw %}\n\nprint(f'<{f(2)}>') && echo \"$HOME\""
)


def _records(tag: str, n: int, k: int, words: tuple[str, ...] = ()) -> list[dict]:
    out = []
    for i in range(n):
        word = words[i % len(words)] if words else ""
        out.append(
            {
                "prompt": f"### Instruction:\n{tag} question {i} {word}\n\n### Response:\n",
                "responses": {f"{tag} answer {i}.{j}": float(j == i % k) for j in range(k)},
                "instruction": f"{tag} question {i}",
            }
        )
    return out


def _write(root: Path, dist_id: str, train: list[dict], test: list[dict]) -> None:
    d = root / "distributions" / dist_id
    d.mkdir(parents=True)
    (d / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (d / "test.json").write_text(json.dumps(test), encoding="utf-8")


def xss_records() -> list[dict]:
    return [
        {
            "prompt": XSS,
            "responses": {HTML_RESPONSE: 1.0, CODE_RESPONSE: 0.0, "plain & simple <3": 0.0},
            "note": XSS,
        },
        {"prompt": "a second prompt", "responses": {"yes": 1.0, "no": 0.0}},
    ]


def write_xss(root: Path) -> None:
    """The ``xss_probe`` distribution: HTML, script and template syntax in every field."""
    _write(root, "xss_probe", xss_records(), xss_records())


def build_small_store(tmp: Path) -> Path:
    """A data store with code_easy/code_hard (a registry shift), alpaca_mmlu and xss_probe."""
    src = tmp / "src"
    words = ("apple", "Banana", "cherry")
    _write(src, "code_easy", _records("easy", 40, 4, words), _records("easy-test", 30, 4, words))
    _write(src, "code_hard", _records("hard", 40, 4, words), _records("hard-test", 60, 4, words))
    _write(src, "alpaca_mmlu", _records("mmlu", 10, 2), _records("mmlu-test", 10, 2))
    write_xss(src)
    data = tmp / "data"
    import_data(src, data_dir=data)
    return data


def evaluation(
    data_dir: Path,
    dist_id: str,
    *,
    intervention: str = "zero_shot",
    model: str = "tiny-test-model",
    train: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    fingerprint: str | None = "auto",
) -> EvaluationRecord:
    """A record over the test split's pairs with seeded p(correct) (the first ``limit`` pairs)."""
    split = load_distribution(dist_id, data_dir, strict=False).test
    pairs = split.to_pairs("all")[:limit]
    p = np.random.default_rng(seed).uniform(0.05, 0.95, len(pairs)).round(4).tolist()
    key = hashlib.sha256(f"{dist_id}|{intervention}|{model}|{train}|{seed}|{limit}".encode()).hexdigest()
    acc = float(np.mean([x > 0.5 for x in p])) if p else math.nan
    return EvaluationRecord(
        key=key,
        intervention=intervention,
        model={"name": model},
        train_distribution=train,
        eval_distribution=dist_id,
        eval_split="test",
        eval_fingerprint=split.fingerprint if fingerprint == "auto" else fingerprint,
        seed=seed,
        limit=limit,
        pair_ids=[q.id for q in pairs],
        p_correct=p,
        n=len(p),
        metrics={"accuracy": acc},
        created="2026-01-01T00:00:00+00:00",
    )


def save(store: Path, record: EvaluationRecord) -> Path:
    path = store / "evaluations" / record.key[:2] / f"{record.key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.model_dump_json(indent=1), encoding="utf-8")
    return path


def suite_result(
    intervention: str,
    rows: list[tuple[str, str, str, float, float]],
    *,
    suite: str = "genies",
    keys: dict[str, str] | None = None,
) -> SuiteResult:
    """Rows of (source, target, category, generalization accuracy, DE); ``keys``: target -> the
    generalization evaluation's key."""
    return SuiteResult(
        suite=suite,
        intervention=intervention,
        model={"name": "tiny-test-model"},
        created="2026-01-01T00:00:00+00:00",
        rows=[
            ShiftResult(
                source=s,
                target=t,
                target_reference=t,
                category=c,
                group="extreme" if c != "spurious_cues" else "probing",
                generalization_accuracy=g,
                baseline_accuracy=0.5,
                target_tuned_capability=0.8,
                source_ID_accuracy=0.7,
                RMS_calibration_error=0.1,
                differential_elicitation=de,
                generalization_accuracy_ci=(g - 0.05, g + 0.05),
                target_tuned_capability_intervention=intervention,
                evaluation_keys={"generalization": keys[t]} if keys and t in keys else {},
            )
            for s, t, c, g, de in rows
        ],
    )


def write_result(results: Path, rel: str, result: SuiteResult) -> Path:
    path = results / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.model_dump_json(indent=1), encoding="utf-8")
    return path


ROWS_A = [
    ("code_easy", "code_hard", "difficulty", 0.61, 0.30),
    ("alpaca_mmlu", "spanish_output", "encoding", 0.72, -0.10),
    ("alpaca_short", "alpaca_long", "spurious_cues", 0.55, 0.05),
]
ROWS_B = [
    ("code_easy", "code_hard", "difficulty", 0.66, 0.45),
    ("alpaca_mmlu", "spanish_output", "encoding", 0.58, -0.25),
    ("alpaca_short", "alpaca_long", "spurious_cues", 0.51, None),
]


def tree_hash(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative posix path -> digest), following no links."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
