"""Typed, documented JSON records that genies stores and writes (schema versioned).

* ``EvaluationRecord`` — one intervention state evaluated on one distribution split; the unit of the
  result store. Per-pair p(correct) and pair ids are kept so every metric can be recomputed, and a
  genies record keeps the node ``inputs`` its key hashes, so the store can verify what it serves.
* ``LengthsRecord`` — which examples of a split are too long for a model under one length rule.
* ``ShiftResult`` / ``SuiteResult`` — one row per distribution shift, as written to
  ``<out>/<suite>.json`` by ``genies run`` (the CSV has the 11 upstream columns only).
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

SCHEMA_VERSION = 2
# Bumped whenever a change to scoring could change a number; part of every cache key.
SCORING_VERSION = "1"

#: The exact upstream CSV columns, in order (published-results.md).
UPSTREAM_CSV_COLUMNS: tuple[str, ...] = (
    "source",
    "target",
    "target_reference",
    "generalization_accuracy",
    "baseline_accuracy",
    "baseline_intervention",
    "target_tuned_capability",
    "target_tuned_capability_intervention",
    "source_ID_accuracy",
    "RMS_calibration_error",
    "differential_elicitation",
)


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class EvaluationRecord(_Model):
    """One evaluation: an intervention (trained on ``train_distribution``) scored on a split.

    ``metrics`` are ``genies.metrics.summarize(p_correct)`` under ``metrics_version``; keys (all floats,
    NaN allowed): ``accuracy`` (ties count half), ``accuracy_upstream`` (ties count as correct),
    ``tie_rate``, ``brier_score``, ``average_probability``, ``rms_calibration_error``, ``ece``,
    ``rms_calibration_error_upstream``.

    For genies records (``origin="genies"``) ``inputs`` is the evaluation node's inputs (``key`` is
    their content hash) and the descriptive fields (intervention, config, model, distributions,
    fingerprints, seed, limit, scoring version) are derived from them; ``generation`` is the store
    generation the record was computed in and ``deps`` the generation of each node it was computed
    from (``genies.pipeline.store`` says how both make ``--force`` work). ``dropped`` counts pairs of
    over-length examples left out at the data level; ``info`` is the intervention's diagnostics and
    ``environment`` where and how it ran (device, dtype, host, process).
    """

    schema_version: int = SCHEMA_VERSION
    kind: Literal["evaluation"] = "evaluation"
    key: str  # content hash of everything that determines the numbers
    origin: Literal["genies", "upstream"] = "genies"  # upstream = imported paper result (read-only)
    label: str | None = None  # e.g. the paper's model name for imported records
    intervention: str
    config: dict[str, Any] = {}
    model: dict[str, Any] = {}  # model identity (alias/path + weights hash)
    train_distribution: str | None = None
    train_fingerprint: str | None = None
    eval_distribution: str
    eval_split: str = "test"
    eval_fingerprint: str | None = None
    seed: int | None = None
    limit: int | None = None
    scoring_version: str = SCORING_VERSION
    inputs: dict[str, Any] = {}
    pair_ids: list[str] = []
    p_correct: list[float] = []
    n: int
    ties: int = 0
    dropped: int = 0
    metrics: dict[str, float] = {}
    metrics_version: str = ""
    generation: int = 0
    deps: dict[str, int] = {}
    info: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    timings: dict[str, float] = {}
    versions: dict[str, str] = {}
    created: str = ""


class LengthsRecord(_Model):
    """Over-length examples of one split for one model and length rule (a ``lengths`` node's result).

    ``over_length`` lists the example indices whose longest response needs more than ``max_length``
    tokens under the rule (``longest`` holds each example's count, so the record is checkable).
    """

    schema_version: int = SCHEMA_VERSION
    kind: Literal["lengths"] = "lengths"
    key: str
    inputs: dict[str, Any]
    max_length: int
    longest: list[int]
    over_length: list[int]
    created: str = ""


class ShiftResult(_Model):
    """One distribution shift's row: the 11 upstream columns plus typed extras (CIs, categories, keys)."""

    source: str
    target: str
    target_reference: str
    category: str | None = None
    group: str | None = None
    generalization_accuracy: float | None = None
    baseline_accuracy: float | None = None
    baseline_intervention: str | None = None
    target_tuned_capability: float | None = None
    target_tuned_capability_intervention: str | None = None
    source_ID_accuracy: float | None = None
    RMS_calibration_error: float | None = None
    differential_elicitation: float | None = None
    generalization_accuracy_ci: tuple[float, float] | None = None
    differential_elicitation_ci: tuple[float, float] | None = None
    extra_metrics: dict[str, float] = {}
    evaluation_keys: dict[
        str, str
    ] = {}  # role → EvaluationRecord.key (generalization, baseline, ttc, source_id)


class SuiteResult(_Model):
    """The full typed output of one ``genies run`` over a suite."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["suite_result"] = "suite_result"
    suite: str
    intervention: str
    intervention_config: dict[str, Any] = {}
    baseline_intervention: str = "zero_shot"
    ttc: str = "single"  # "single" or "best-of:I1,I2"
    ttc_interventions: list[str] = []
    model: dict[str, Any] = {}
    seed: int = 0
    limit: int | None = None
    created: str = ""
    versions: dict[str, str] = {}
    rows: list[ShiftResult] = []
