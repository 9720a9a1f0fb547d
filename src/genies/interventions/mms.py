"""``mms``: mass-mean shift over attention heads (upstream-reference §4.7).

Per (layer, head): the mass-mean direction ``mean(correct) − mean(incorrect)`` of the head's output
(the ``o_proj`` input at the last token) over all training pairs; the 16 heads whose logistic probes
score best on a seeded 30% validation split are kept; a pair's feature is the mean cosine between
its difference and those directions, mapped to p(correct) by a 1-D logistic calibrator fitted on the
validation pairs. Reads only cached activations (``heads`` of ``prompt + response``).
"""

from __future__ import annotations

from typing import ClassVar

import pydantic

from genies.api.intervention import InterventionConfig
from genies.interventions._representation import RAW_TEMPLATE, MassMeanConfig, MassMeanIntervention
from genies.interventions.registry import register_intervention

#: The stimulus: the raw ``prompt + response`` (``None`` renders ``"{prompt}{response}"``).
MMS_TEMPLATE = RAW_TEMPLATE


class MMSConfig(MassMeanConfig):
    """``num_intervention_heads`` (None: 16, capped at the model's count), ``val_ratio`` (0.3), ``do_calibration`` (true)."""

    num_intervention_heads: int | None = pydantic.Field(
        None, ge=1, description="Heads kept; None = upstream's 16, capped at the model's count."
    )


@register_intervention("mms")
class MMS(MassMeanIntervention):
    """Mass-mean probing over attention heads."""

    Config: ClassVar[type[InterventionConfig]] = MMSConfig
    site = "heads"
    templates = (MMS_TEMPLATE,)
    count_field = "num_intervention_heads"
    template_name = "MMS_TEMPLATE"
