"""Small abstract contracts that plug-ins implement (style of lm-evaluation-harness's ``api/``)."""

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    ScoredPairs,
)

__all__ = ["Intervention", "InterventionConfig", "InterventionState", "ScoredPairs"]
