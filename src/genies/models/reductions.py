"""Reductions of a forward pass: what the engine keeps of the hidden states.

* log-probabilities of response tokens (scoring): the vocabulary head is applied only to the hidden
  states that predict a scored token, and ``logit - logsumexp`` runs in float32 chunks;
* activations at the last token of each text (``resid``, ``heads``, ``final``): read by hooks
  (``genies.models.forward.capture``), float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LM_HEAD_CHUNK = 256  # hidden states projected to the vocabulary at once: [256, V] float32 logits


@dataclass(frozen=True)
class ResponseScore:
    """Summed log-prob (nats) of a response's ``n_tokens`` tokens (incl. EOS) after ``prompt_tokens``."""

    logprob_sum: float
    n_tokens: int
    prompt_tokens: int


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log-softmax at the targets, from float32 logits.

    ``logit − logsumexp`` rather than ``log_softmax``: on CPU, torch's float32 log_softmax kernel is
    off by ~2e-5 nats per token (its normaliser accumulates 49k exponentials in float32), while
    logsumexp stays within ~1e-7 of a float64 computation, and only the target column is needed.
    """
    import torch

    logits = logits.float()
    return logits.gather(1, targets[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)


def final_logit_softcap(config: Any) -> float | None:
    """Gemma-style ``final_logit_softcapping`` (applied as ``tanh(x / c) * c``), or None."""
    return getattr(config, "final_logit_softcapping", None) or getattr(
        getattr(config, "text_config", None), "final_logit_softcapping", None
    )


def head_logprobs(
    lm_head: Any, hidden: torch.Tensor, targets: torch.Tensor, softcap: float | None = None
) -> torch.Tensor:
    """log p(target) for each row of ``hidden`` [n, D]: vocabulary projection + float32 log-softmax,
    ``LM_HEAD_CHUNK`` rows at a time (so the [n, V] logits never exist at once)."""
    import torch

    out = []
    for start in range(0, hidden.shape[0], LM_HEAD_CHUNK):
        logits = lm_head(hidden[start : start + LM_HEAD_CHUNK]).float()
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        out.append(target_logprobs(logits, targets[start : start + LM_HEAD_CHUNK]))
    return torch.cat(out) if out else hidden.new_zeros(0, dtype=torch.float32)
