"""Tokenisation rules of the engine, and token lengths computed from a tokenizer alone.

The engine and the planner must agree on lengths to the token, so both use these functions: the
planner (with ``genies.models.loading.load_tokenizer`` + ``max_length``, no weights) drops
over-length examples before any model is loaded, and the engine then never meets one.

* Scoring (upstream §4.1): prompt and ``response + eos`` tokenised separately with
  ``add_special_tokens=False``; an empty prompt becomes a one-token BOS (else EOS) context.
* Extraction (upstream §4.0): the rendered text with the tokenizer's default special tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genies.errors import ModelError
from genies.models.templates import Text, render_all


def _eos(tokenizer: Any) -> str:
    if tokenizer.eos_token is None or tokenizer.eos_token_id is None:
        raise ModelError("the tokenizer has no EOS token; upstream scoring appends EOS")
    return tokenizer.eos_token


def empty_context(tokenizer: Any) -> list[int]:
    """The one-token context of an empty prompt: BOS, else EOS."""
    bos = tokenizer.bos_token_id
    return [bos if bos is not None else tokenizer.eos_token_id]


def encode_requests(tokenizer: Any, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(context ids, response ids) per scoring request, tokenised exactly as upstream."""
    if not requests:
        return []
    eos = _eos(tokenizer)
    prompts = sorted({p for p, _ in requests})
    ptoks = dict(zip(prompts, tokenizer(prompts, add_special_tokens=False)["input_ids"], strict=True))
    rtoks = tokenizer([r + eos for _, r in requests], add_special_tokens=False)["input_ids"]
    empty = empty_context(tokenizer)
    return [(list(ptoks[p]) or list(empty), list(r)) for (p, _), r in zip(requests, rtoks, strict=True)]


def encode_texts(tokenizer: Any, texts: Sequence[Text], template: str | None = None) -> list[list[int]]:
    """Token ids of each rendered text, with the tokenizer's default special tokens."""
    rendered = render_all(texts, template)
    if not rendered:
        return []
    return [list(ids) for ids in tokenizer(rendered)["input_ids"]]


def scoring_lengths(tokenizer: Any, requests: Sequence[tuple[str, str]]) -> list[int]:
    """Tokens the engine runs for each scoring request (context + response incl. EOS)."""
    return [len(c) + len(r) for c, r in encode_requests(tokenizer, requests)]


def text_lengths(tokenizer: Any, texts: Sequence[Text], template: str | None = None) -> list[int]:
    """Tokens of each text as extraction tokenises it (0 for a text that tokenises to nothing)."""
    return [len(ids) for ids in encode_texts(tokenizer, texts, template)]
