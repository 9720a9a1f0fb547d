"""Models: registry aliases, loading (GGUF converted once to safetensors), and the forward engine.

Typical use::

    from genies.models import load_model, ForwardEngine, pair_p_correct
    lm = load_model("smollm2-135m")                  # or a local HF folder / .gguf file / hub id
    engine = ForwardEngine(lm)                       # one per loaded model
    scores = engine.score([(prompt, response), ...])
    acts = engine.extract([(prompt, response), ...], sites=("resid", "heads"))

Modules, bottom up: ``registry`` and ``loading`` (names, weights, tokenizer-only helpers),
``templates`` and ``lengths`` (texts and their tokens), ``batching`` (token trees and batches),
``forward`` (tree attention and hooks), ``kernels`` (thread-invariant attention on CPU), ``reductions`` (log-probs), ``engine`` (the engine),
``scoring`` and ``activations`` (the public functions), ``activation_cache`` (activations on disk),
``check`` (``genies models check``).
"""

from genies.models.activation_cache import ActivationCache
from genies.models.activations import extract
from genies.models.engine import ForwardEngine
from genies.models.loading import LoadedModel, load_model, load_tokenizer, max_length, model_identity, prepare
from genies.models.registry import DEFAULT_MODEL, REGISTRY, list_models, resolve_name
from genies.models.scoring import ResponseScore, Scorer, pair_p_correct, score_reference

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "ActivationCache",
    "ForwardEngine",
    "LoadedModel",
    "ResponseScore",
    "Scorer",
    "extract",
    "list_models",
    "load_model",
    "load_tokenizer",
    "max_length",
    "model_identity",
    "pair_p_correct",
    "prepare",
    "resolve_name",
    "score_reference",
]
