"""genies: a toolkit and benchmark for how reward models generalize human feedback (GENIES).

The public API is re-exported here; see the README for a tour.
"""

from __future__ import annotations

from genies import (
    _numerics,  # noqa: F401  (first: it configures MKL before torch can load)
    metrics,
)
from genies._meta import __version__
from genies.api.context import InterventionContext
from genies.api.intervention import (
    ActivationSpec,
    Intervention,
    InterventionConfig,
    InterventionState,
    LengthRule,
    Requirements,
    ScoredPairs,
)
from genies.data import import_data, list_distribution_ids, load_distribution
from genies.data.schema import Distribution, Example, Pair, Split
from genies.errors import GeniesError
from genies.interventions.registry import get_intervention, list_interventions, register_intervention
from genies.models import LoadedModel, Scorer, load_model, pair_p_correct
from genies.pipeline import RunOptions, run_suite
from genies.records import EvaluationRecord, ShiftResult, SuiteResult
from genies.shifts import Shift, get_suite, list_suites

__all__ = [
    "ActivationSpec",
    "InterventionContext",
    "LengthRule",
    "Requirements",
    "Distribution",
    "EvaluationRecord",
    "LoadedModel",
    "RunOptions",
    "Scorer",
    "Shift",
    "ShiftResult",
    "SuiteResult",
    "get_suite",
    "import_data",
    "list_distribution_ids",
    "list_suites",
    "load_distribution",
    "load_model",
    "metrics",
    "pair_p_correct",
    "run_suite",
    "Example",
    "GeniesError",
    "Intervention",
    "InterventionConfig",
    "InterventionState",
    "Pair",
    "ScoredPairs",
    "Split",
    "__version__",
    "get_intervention",
    "list_interventions",
    "register_intervention",
]
