"""``cra``: contrast of "Yes"/"No" continuations over attention heads (upstream-reference §4.10).

Each response is read twice, followed by ``YES_TEMPLATE``'s and ``NO_TEMPLATE``'s question and answer;
the feature of a response is ``heads(… Yes) − alpha · heads(… No)`` at the last token, and the rest is
mms on that feature (mass-mean directions, probe-selected heads, mean cosine, calibrator). Fixes of
§5.13: the train/validation split is seeded (upstream drew it before seeding), alpha is applied the
same way at training and scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pydantic

from genies.api.intervention import InterventionConfig
from genies.interventions._representation import (
    NO_TEMPLATE,
    YES_TEMPLATE,
    MassMeanConfig,
    MassMeanIntervention,
    PairSite,
)
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair

#: The two continuations (upstream's ``YES`` / ``NO`` suffixes after the response).
CRA_YES_TEMPLATE = YES_TEMPLATE
CRA_NO_TEMPLATE = NO_TEMPLATE


class CRAConfig(MassMeanConfig):
    """``num_intervention_heads`` (None: 16, capped), ``alpha`` (1), ``val_ratio``, ``do_calibration``."""

    num_intervention_heads: int | None = pydantic.Field(
        None, ge=1, description="Heads kept; None = upstream's 16, capped at the model's count."
    )
    alpha: float = pydantic.Field(1.0, description="Weight of the 'No' activations: f = yes − alpha·no.")


@register_intervention("cra")
class CRA(MassMeanIntervention):
    """Mass-mean probing of the Yes − No contrast over attention heads."""

    Config: ClassVar[type[InterventionConfig]] = CRAConfig
    site = "heads"
    templates = (CRA_YES_TEMPLATE, CRA_NO_TEMPLATE)
    count_field = "num_intervention_heads"
    template_name = "CRA_YES_TEMPLATE − alpha·CRA_NO_TEMPLATE"

    def features(self, ctx: InterventionContext, pairs: Sequence[Pair], cfg: Any) -> PairSite:
        yes = PairSite(ctx, pairs, "heads", CRA_YES_TEMPLATE)
        return yes.minus(PairSite(ctx, pairs, "heads", CRA_NO_TEMPLATE), cfg.alpha)
