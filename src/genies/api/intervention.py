"""The intervention contract: turn a base causal LM into a preference classifier.

This is what a plug-in author implements (docs/pipeline.md is the full reference)::

    @register_intervention("my_probe")
    class MyProbe(Intervention):
        Config = MyProbeConfig                         # pydantic, extra keys forbidden, strict types

        def requirements(self, config) -> Requirements:  # what fit and scoring need
            return Requirements(fit_model=True, fit_activations=(ActivationSpec(("resid",)),),
                                score_activations=(ActivationSpec(("resid",)),),
                                lengths=(LengthRule("text"),), train_lengths=(LengthRule("text"),))

        def fit(self, ctx, train, config) -> InterventionState: ...
        def score_pairs(self, ctx, state, pairs, config) -> ScoredPairs: ...

* ``ctx`` is a ``genies.api.context.InterventionContext``: the seed (``ctx.seed``, the only source
  of randomness), the model (loaded on first use), ``ctx.scores`` / ``ctx.activations`` through the
  model's one forward engine, ``ctx.adapter`` to train adapters on the shared model,
  ``ctx.checkpoint_dir`` for resumable training, ``ctx.progress`` and ``ctx.log``.
* ``requirements(config)`` replaces the old ``trains`` / ``uses_train_data`` / ``cache_exclude``
  flags: the planner derives cache keys and graph dependencies from it (see ``Requirements``).
* A state is JSON ``meta`` plus named tensors (safetensors) — never pickle.
* ``score_pairs`` scores *every* pair it is given, in order. Over-length examples are dropped before,
  at the data level, by the rules ``requirements`` declares, so every evaluation of one distribution
  in a run scores the same pairs.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pydantic

from genies.errors import ConfigError, StoreError
from genies.io import atomic_path, atomic_write_json

if TYPE_CHECKING:
    import torch

    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

#: Activation sites (seams.md §2): ``resid`` [n, L, D], ``heads`` [n, L, H, head_dim], ``final`` [n, D].
SITES: tuple[str, ...] = ("resid", "heads", "final")
PairMode = Literal["all", "one_per_example"]


class InterventionConfig(pydantic.BaseModel):
    """Base of every intervention's config.

    Unknown keys are errors and types are strict (``true`` is not an int, ``"4"`` is not a number),
    so a typo or a wrong type fails before any work starts. Values are validated as JSON data (what
    a TOML file or ``--set`` gives), so lists are accepted for tuple fields.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=True)


@dataclass(frozen=True)
class LengthRule:
    """Which texts of an example must fit the model's maximum length.

    ``kind="scoring"``: log-prob scoring of ``response + EOS`` after ``prompt`` (upstream §1.5: the
    joint text with the tokenizer's special tokens, and the separately tokenised prompt and response
    that are actually scored). ``kind="text"``: the text ``template`` renders (activation methods;
    ``None`` means ``"{prompt}{response}"``), with the tokenizer's special tokens.
    An example is dropped, whole, when any of its responses breaks a rule.
    """

    kind: Literal["scoring", "text"] = "scoring"
    template: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("scoring", "text"):
            raise ValueError(f"unknown length rule kind {self.kind!r}")
        if self.kind == "scoring" and self.template is not None:
            raise ValueError("a scoring length rule has no template")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "template": self.template}


@dataclass(frozen=True)
class ActivationSpec:
    """Activations a stage reads: ``sites`` of the texts ``template`` renders.

    For ``fit_activations`` the texts are the pairs of the training split made with ``pairs``
    (``one_per_example`` seeded by ``ctx.seed``, as upstream's probes; or ``all``); for
    ``score_activations`` they are the evaluated pairs. Each pair contributes ``(prompt, correct)``
    and ``(prompt, incorrect)`` (see ``pair_texts``).
    """

    sites: tuple[str, ...] = ("resid", "heads")
    template: str | None = None
    pairs: PairMode = "one_per_example"

    def __post_init__(self) -> None:
        bad = [s for s in self.sites if s not in SITES]
        if not self.sites or bad:
            raise ValueError(f"activation sites must be some of {', '.join(SITES)}, got {list(self.sites)}")
        if self.pairs not in ("all", "one_per_example"):
            raise ValueError(f"unknown pair mode {self.pairs!r}")

    def to_json(self) -> dict[str, Any]:
        return {"sites": sorted(self.sites), "template": self.template, "pairs": self.pairs}


@dataclass(frozen=True)
class Requirements:
    """What an intervention's ``fit`` and ``score_pairs`` need, declared per config.

    * ``train_data`` — fit reads the training split. False: the state never depends on it (zero_shot),
      so "fitted on S" and "the base model" are one state and their evaluations one key.
    * ``fit_model`` — fit uses the model (weights, engine, adapters). False: fitting never loads it.
    * ``score_model`` — scoring uses the model. False (methods that read only cached activations):
      an evaluation whose activations are cached runs without loading it.
    * ``result_neutral`` — config keys that never change a number (``batch_size``): left out of keys.
    * ``fit_activations`` / ``score_activations`` — activations fit / scoring read; the planner adds
      ``activations`` nodes that fill the activation cache first, and ``ctx.activations`` reads them.
    * ``lengths`` — rules the evaluated pairs must fit (dropped at the data level, once per model,
      distribution and rule, and shared by every evaluation of the distribution in a run);
      ``train_lengths`` — rules applied to the training split before ``fit``.
    """

    train_data: bool = True
    fit_model: bool = True
    score_model: bool = True
    result_neutral: frozenset[str] = frozenset()
    fit_activations: tuple[ActivationSpec, ...] = ()
    score_activations: tuple[ActivationSpec, ...] = ()
    lengths: tuple[LengthRule, ...] = ()
    train_lengths: tuple[LengthRule, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "result_neutral", frozenset(self.result_neutral))
        if self.fit_activations and not self.train_data:
            raise ValueError("fit_activations read the training split, so train_data must be True")


def pair_texts(pairs: Sequence[Pair]) -> list[tuple[str, str]]:
    """The distinct ``(prompt, response)`` texts of ``pairs``, in order: correct, then incorrect."""
    seen: dict[tuple[str, str], None] = {}
    for p in pairs:
        seen.setdefault((p.prompt, p.correct))
        seen.setdefault((p.prompt, p.incorrect))
    return list(seen)


@dataclass
class InterventionState:
    """What ``fit`` produces: JSON-able ``meta`` plus named ``tensors`` (saved with safetensors)."""

    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    META_FILE: ClassVar[str] = "state.json"
    TENSOR_FILE: ClassVar[str] = "tensors.safetensors"

    def save(self, directory: str | Path) -> None:
        """Write ``state.json`` (and ``tensors.safetensors``) atomically into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.tensors:
            with atomic_path(directory / self.TENSOR_FILE) as tmp:
                save_file({k: v.detach().contiguous().cpu() for k, v in self.tensors.items()}, str(tmp))
        atomic_write_json(directory / self.META_FILE, {"meta": self.meta, "tensors": sorted(self.tensors)})

    @classmethod
    def load(cls, directory: str | Path) -> InterventionState:
        from safetensors.torch import load_file

        directory = Path(directory)
        try:
            doc = json.loads((directory / cls.META_FILE).read_text(encoding="utf-8"))
            names = doc["tensors"]
            meta = doc["meta"]
            tensors = load_file(str(directory / cls.TENSOR_FILE)) if names else {}
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError on bad bytes
            raise StoreError(f"corrupt intervention state in {directory}: {exc}") from exc
        if not isinstance(meta, dict) or sorted(tensors) != sorted(names):
            raise StoreError(f"corrupt intervention state in {directory}: tensor names do not match")
        return cls(meta=meta, tensors=tensors)


@dataclass
class ScoredPairs:
    """p(correct) for every scored pair, in input order; ``info`` holds JSON-able diagnostics."""

    pair_ids: list[str]
    p_correct: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.p_correct = np.asarray(self.p_correct, dtype=np.float64)
        if len(self.pair_ids) != len(self.p_correct):
            raise ValueError("pair_ids and p_correct differ in length")


def scored_pairs(pairs: Sequence[Pair], p: Any, /, **info: Any) -> ScoredPairs:
    """The usual end of ``score_pairs``: ``p[i]`` is p(correct) of ``pairs[i]``; ``info`` the JSON-able
    diagnostics (``scored_pairs(pairs, p, mode=cfg.mode)``)."""
    return ScoredPairs([x.id for x in pairs], p, info=info)


def _validation_errors(exc: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg']}" for e in exc.errors())


class Intervention(ABC):
    """Base class of interventions; register subclasses with ``@register_intervention("name")``.

    ``name`` is set by the registry; ``Config`` is the pydantic config class. Override
    ``requirements`` to say what ``fit`` and ``score_pairs`` need (the defaults are the cautious
    ones: fit reads the training split and the model, no data-level length rules).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[InterventionConfig]] = InterventionConfig

    @classmethod
    def make_config(cls, values: dict[str, Any] | None = None) -> InterventionConfig:
        """Validate ``values`` into this intervention's config; any problem is a one-line ConfigError."""
        allowed = ", ".join(sorted(cls.Config.model_fields)) or "none"
        try:
            text = json.dumps(values or {}, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid config for intervention {cls.name!r}: {exc}") from None
        try:
            return cls.Config.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise ConfigError(
                f"invalid config for intervention {cls.name!r}: {_validation_errors(exc)} (keys: {allowed})"
            ) from None

    def requirements(self, config: InterventionConfig) -> Requirements:
        """What fit and scoring need under ``config`` (see ``Requirements``)."""
        return Requirements()

    def key_config(self, config: InterventionConfig) -> dict[str, Any]:
        """The config as it enters cache keys: JSON values without the result-neutral keys."""
        neutral = self.requirements(config).result_neutral
        return {k: v for k, v in config.model_dump(mode="json").items() if k not in neutral}

    def check_config(self, config: InterventionConfig | dict[str, Any] | None) -> Any:
        """This intervention's config (a dict is validated); another intervention's config is refused."""
        if config is None or isinstance(config, dict):
            return self.make_config(config)
        if not isinstance(config, self.Config):
            raise ConfigError(
                f"intervention {self.name!r} needs a {self.Config.__name__}, got {type(config).__name__}"
            )
        return config

    @abstractmethod
    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        """Train on a training split (already limited and length-filtered); return a serialisable state."""

    @abstractmethod
    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        """p(correct) for every pair, in order; must not depend on batch size or response order."""
