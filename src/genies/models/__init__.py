"""Models: registry aliases, loading (GGUF converted once to safetensors), and the scoring engine.

Typical use::

    from genies.models import load_model, Scorer, pair_p_correct
    lm = load_model("smollm2-135m")                  # or a local HF folder / .gguf file / hub id
    scores = Scorer(lm).score([(prompt, response), ...])
"""

from genies.models.loading import LoadedModel, load_model, model_identity, prepare
from genies.models.registry import DEFAULT_MODEL, REGISTRY, list_models, resolve_name
from genies.models.scoring import ResponseScore, Scorer, pair_p_correct, score_reference

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "LoadedModel",
    "ResponseScore",
    "Scorer",
    "list_models",
    "load_model",
    "model_identity",
    "pair_p_correct",
    "prepare",
    "resolve_name",
    "score_reference",
]
