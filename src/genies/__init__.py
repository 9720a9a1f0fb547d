"""genies: a toolkit and benchmark for how reward models generalize human feedback (GENIES).

The public API is re-exported here; see the README for a tour.
"""

from __future__ import annotations

__version__ = "0.1.0"

from genies.api.intervention import Intervention, InterventionConfig, InterventionState, ScoredPairs
from genies.data.schema import Distribution, Example, Pair, Split
from genies.errors import GeniesError
from genies.interventions.registry import get_intervention, list_interventions, register_intervention

__all__ = [
    "Distribution",
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
