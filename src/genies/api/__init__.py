"""Small contracts that plug-ins implement and use (style of lm-evaluation-harness's ``api/``).

``Intervention`` (with ``Requirements``, ``LengthRule``, ``ActivationSpec``), ``InterventionState``,
``ScoredPairs`` (``scored_pairs`` builds one) and the ``InterventionContext`` that ``fit`` and ``score_pairs`` receive.
"""

from genies.api.context import InterventionContext, ModelSession
from genies.api.intervention import (
    ActivationSpec,
    Intervention,
    InterventionConfig,
    InterventionState,
    LengthRule,
    Requirements,
    ScoredPairs,
    pair_texts,
    scored_pairs,
)

__all__ = [
    "ActivationSpec",
    "Intervention",
    "InterventionConfig",
    "InterventionContext",
    "InterventionState",
    "LengthRule",
    "ModelSession",
    "Requirements",
    "ScoredPairs",
    "pair_texts",
    "scored_pairs",
]
