"""Activations at the last token of texts: the public function over the forward engine.

::

    from genies.models.activations import extract
    acts = extract(lm, [(prompt, response), ...], sites=("resid", "heads"))
    acts["resid"]   # float32 [n_texts, L, D]             hidden_states[0..L-1] at the last token
    acts["heads"]   # float32 [n_texts, L, H, head_dim]   each layer's o_proj input, per query head
    acts["final"]   # float32 [n_texts, D]                the final norm's output (hidden_states[L])

Texts are tokenised with the tokenizer's default special tokens (upstream §4.0: LLaMA prepends BOS,
no EOS); the last token is each text's last real token, whatever the batching. Texts that share a
prompt share a token tree, so the prompt is computed once. With a template (``{prompt}`` and
``{response}``, ``genies.models.templates``) texts are ``(prompt, response)`` pairs.

The representation methods (MMS, LAT, CRA, CCS; upstream §4.7-§4.11) read these sites; a cache of
them on disk is ``genies.models.activation_cache.ActivationCache``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from genies.models.forward import SITES, Sites, find_sites
from genies.models.templates import Text

if TYPE_CHECKING:
    import torch

    from genies.models.engine import ForwardEngine
    from genies.models.loading import LoadedModel

__all__ = ["SITES", "Sites", "extract", "find_sites"]


def extract(
    lm: LoadedModel | ForwardEngine,
    texts: Sequence[Text],
    sites: Sequence[str] = ("resid", "heads"),
    template: str | None = None,
    *,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """``{site: float32 tensor}`` for each text (see the module docstring); ``lm`` may be an engine."""
    from genies.models.engine import ForwardEngine

    engine = lm if isinstance(lm, ForwardEngine) else ForwardEngine(lm)
    return engine.extract(texts, sites, template, batch_size=batch_size)
