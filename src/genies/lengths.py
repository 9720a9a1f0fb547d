"""Token lengths without the model: which examples fit a model, under an intervention's ``LengthRule``.

Only a tokenizer is needed, so the planner decides over-length drops before any weights are loaded
(upstream-reference §1.5). Two rules (``genies.api.intervention.LengthRule``):

* ``scoring`` — log-prob scoring of ``response + EOS`` after ``prompt``: the longer of upstream's
  count (``tok(prompt + response + eos)`` with the tokenizer's special tokens, e.g. LLaMA's BOS) and
  the count actually scored (prompt and ``response + eos`` tokenised separately without special
  tokens; an empty prompt counts as one token of context), so a kept example can always be scored;
* ``text`` — the text a template renders, with the tokenizer's special tokens (activation methods).

An example is over length when any of its responses needs more than the model's maximum length.
Tokenisation and templates are the forward engine's (``genies.models.lengths``,
``genies.models.templates``): the planner and the engine agree to the token by sharing the code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "{prompt}{response}"


def render_template(template: str | None, prompt: str, response: str) -> str:
    """``template`` with ``{prompt}`` and ``{response}`` replaced (``None``: prompt + response).

    The engine's renderer (``genies.models.templates.render``): one implementation for both."""
    from genies.models.templates import render

    return render(template, prompt, response)


@contextlib.contextmanager
def _quiet_tokenizer() -> Iterator[None]:
    """No transformers warning that a text is longer than the model's limit (finding those texts is
    the point here)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def scoring_lengths(tokenizer: Any, requests: Sequence[tuple[str, str]]) -> list[int]:
    """Tokens each ``(prompt, response)`` needs under the scoring rule (see the module docstring):
    the larger of upstream's joint count and the count the engine scores
    (``genies.models.lengths.scoring_lengths``, the engine's own tokenisation)."""
    from genies.models import lengths as engine_lengths

    if not requests:
        return []
    eos = tokenizer.eos_token or ""
    with _quiet_tokenizer():
        joint = tokenizer([p + r + eos for p, r in requests], add_special_tokens=True)["input_ids"]
        scored = engine_lengths.scoring_lengths(tokenizer, requests)
    return [max(len(j), n) for j, n in zip(joint, scored, strict=True)]


def text_lengths(tokenizer: Any, requests: Sequence[tuple[str, str]], template: str | None) -> list[int]:
    """Tokens of each rendered text as the engine's extraction tokenises it (special tokens on)."""
    from genies.models import lengths as engine_lengths

    with _quiet_tokenizer():
        return engine_lengths.text_lengths(tokenizer, [tuple(r) for r in requests], template)


def rule_lengths(tokenizer: Any, rule: Any, requests: Sequence[tuple[str, str]]) -> list[int]:
    """Token counts of ``requests`` under ``rule`` (a ``LengthRule`` or its JSON form)."""
    kind = rule["kind"] if isinstance(rule, dict) else rule.kind
    template = rule.get("template") if isinstance(rule, dict) else rule.template
    if kind == "scoring":
        return scoring_lengths(tokenizer, requests)
    if kind == "text":
        return text_lengths(tokenizer, requests, template)
    raise ValueError(f"unknown length rule kind {kind!r}")


def example_lengths(tokenizer: Any, rule: Any, examples: Sequence[Any]) -> list[int]:
    """The longest response of each example under ``rule`` (examples have ``prompt`` and ``texts``)."""
    requests = [(ex.prompt, t) for ex in examples for t in ex.texts]
    counts = iter(rule_lengths(tokenizer, rule, requests))
    return [max(next(counts) for _ in ex.texts) for ex in examples]


class TokenizerSource:
    """A model's tokenizer, identified by the sha256 of the folder's non-weight files (tokenizer and
    config files), and loaded only when a length must actually be computed.

    ``max_length`` is the model's limit as ``load_model`` computes it (the tokenizer's
    ``model_max_length``, else the config's position limit); it is remembered per tokenizer hash under
    ``cache_dir()/hashes`` so a fully cached run does not load the tokenizer at all.
    """

    def __init__(self, name: str, folder: str | Path) -> None:
        self.name, self.folder = name, Path(folder)
        self._sha: str | None = None
        self._tokenizer: Any = None
        self._max_length: int | None = None

    def _files(self) -> list[Path]:
        from genies.models.loading import CONVERSION_FILE
        from genies.models.registry import WEIGHT_PATTERNS

        weights = {p for pat in WEIGHT_PATTERNS for p in self.folder.glob(pat)}
        return [
            p
            for p in sorted(self.folder.iterdir())
            if p.is_file()
            and p not in weights
            and not p.name.startswith(".")
            and p.name != CONVERSION_FILE
            and not p.name.endswith(".lock")
        ]

    @property
    def sha256(self) -> str:
        if self._sha is None:
            from genies.hashing import folder_sha256

            self._sha = folder_sha256(self.folder, self._files(), None)
        return self._sha

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from genies.errors import ModelError

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            except Exception as exc:  # noqa: BLE001 - tokenizer files fail in many ways
                text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise ModelError(
                    f"cannot load the tokenizer of {self.name!r} from {self.folder}: {text}"
                ) from exc
        return self._tokenizer

    @property
    def max_length(self) -> int:
        if self._max_length is None:
            from genies.hashing import _read_json, _write_json_locked
            from genies.paths import cache_dir

            cache = cache_dir() / "hashes" / "tokenizers.json"
            hit = _read_json(cache).get(self.sha256)
            if isinstance(hit, int) and hit > 0:
                self._max_length = hit
            else:
                from transformers import AutoConfig

                from genies.models.loading import model_max_length

                try:
                    config = AutoConfig.from_pretrained(str(self.folder))
                except Exception:  # noqa: BLE001 - no config: the tokenizer's limit alone
                    config = None
                self._max_length = model_max_length(self.tokenizer, config)
                _write_json_locked(cache, {self.sha256: self._max_length})
        return self._max_length
