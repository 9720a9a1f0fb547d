"""``lat_stim_1`` and ``lat_stim_2``: upstream's "LAT" (upstream-reference §4.8, §4.9).

Despite the name there is no PCA: the mms procedure over residual-stream layers ``0 … L−1``
(``hidden_states[i]`` at the last token; the final normed state is never a candidate), keeping the
16 layers whose logistic probes validate best. Stimulus 1 is the raw ``prompt + response``;
stimulus 2 wraps the response in ``LAT_STIM_2_TEMPLATE``. Representation Engineering's LAT (the first
principal component of paired differences) is ``lat_pca``.
"""

from __future__ import annotations

from typing import ClassVar

import pydantic

from genies.api.intervention import InterventionConfig
from genies.interventions._representation import (
    LAT_STIM_2_TEMPLATE,
    RAW_TEMPLATE,
    MassMeanConfig,
    MassMeanIntervention,
)
from genies.interventions.registry import register_intervention

#: Stimulus 1: the raw ``prompt + response``.
LAT_STIM_1_TEMPLATE = RAW_TEMPLATE

__all__ = ["LAT_STIM_1_TEMPLATE", "LAT_STIM_2_TEMPLATE", "LatStim1", "LatStim2"]


class LATConfig(MassMeanConfig):
    """``num_intervention_hidden_states`` (None: 16, capped at the model's count), ``val_ratio`` (0.3), ``do_calibration`` (true)."""

    num_intervention_hidden_states: int | None = pydantic.Field(
        None, ge=1, description="Layers kept; None = upstream's 16, capped at the model's count."
    )


@register_intervention("lat_stim_1")
class LatStim1(MassMeanIntervention):
    """Mass-mean probing over residual-stream layers, stimulus = the raw text."""

    Config: ClassVar[type[InterventionConfig]] = LATConfig
    site = "resid"
    templates = (LAT_STIM_1_TEMPLATE,)
    count_field = "num_intervention_hidden_states"
    template_name = "LAT_STIM_1_TEMPLATE"


@register_intervention("lat_stim_2")
class LatStim2(MassMeanIntervention):
    """Mass-mean probing over residual-stream layers, stimulus = the "Consider the extent…" template."""

    Config: ClassVar[type[InterventionConfig]] = LATConfig
    site = "resid"
    templates = (LAT_STIM_2_TEMPLATE,)
    count_field = "num_intervention_hidden_states"
    template_name = "LAT_STIM_2_TEMPLATE"
