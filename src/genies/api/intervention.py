"""The intervention contract: turn a base causal LM into a preference classifier.

An intervention is trained (``fit``) on a source distribution's train split and then scores pairs
(``score_pairs``) from any distribution. Its trained state is plain JSON metadata plus named tensors
(safetensors) — never pickle — so states can be cached, shared and inspected safely.

Lifecycle used by the pipeline::

    iv = get_intervention("few_shot")           # registry lookup
    cfg = iv.make_config({"num_shots": 4})      # validated; unknown keys raise ConfigError
    state = iv.fit(model, train_split, cfg, seed=0)
    state.save(dir); state = InterventionState.load(dir)
    scored = iv.score_pairs(model, state, pairs, cfg, seed=0)   # p(correct) per pair
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pydantic

from genies.errors import ConfigError, StoreError
from genies.io import atomic_path, atomic_write_json

if TYPE_CHECKING:
    import torch

    from genies.data.schema import Pair, Split
    from genies.models.loading import LoadedModel


class InterventionConfig(pydantic.BaseModel):
    """Base of every intervention's config. Unknown keys are errors (fail before any work)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


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
            tensors = load_file(str(directory / cls.TENSOR_FILE)) if names else {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"corrupt intervention state in {directory}: {exc}") from exc
        if sorted(tensors) != sorted(names):
            raise StoreError(f"corrupt intervention state in {directory}: tensor names do not match")
        return cls(meta=doc["meta"], tensors=tensors)


@dataclass
class ScoredPairs:
    """Result of scoring pairs: p(correct) per kept pair, in input order.

    ``pair_ids`` names the kept pairs (over-length ones are dropped and counted in ``dropped``).
    ``info`` carries intervention-specific diagnostics (JSON-able).
    """

    pair_ids: list[str]
    p_correct: np.ndarray
    dropped: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.p_correct = np.asarray(self.p_correct, dtype=np.float64)
        if len(self.pair_ids) != len(self.p_correct):
            raise ValueError("pair_ids and p_correct differ in length")


class Intervention(ABC):
    """Base class for interventions; subclasses are registered with ``@register_intervention``.

    Class attributes:
      ``name``: registry name; ``Config``: pydantic config class (extra keys forbidden);
      ``trains``: False for interventions whose ``fit`` only records metadata (zero/few-shot), so the
      pipeline can skip the model load for fitting;
      ``uses_train_data``: False when scores never depend on the training split (zero_shot), so
      "trained on S, evaluated on T" and the baseline on T share one cache key and run once;
      ``cache_exclude``: config keys that never change a result (e.g. ``batch_size``) and are left
      out of cache keys.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[InterventionConfig]] = InterventionConfig
    trains: ClassVar[bool] = True
    uses_train_data: ClassVar[bool] = True
    cache_exclude: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def make_config(cls, values: dict[str, Any] | None = None) -> InterventionConfig:
        """Validate ``values`` into this intervention's config; any problem is a one-line ConfigError."""
        try:
            return cls.Config(**(values or {}))
        except pydantic.ValidationError as exc:
            errs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg']}" for e in exc.errors()
            )
            allowed = ", ".join(sorted(cls.Config.model_fields)) or "none"
            raise ConfigError(
                f"invalid config for intervention {cls.name!r}: {errs} (keys: {allowed})"
            ) from None

    @abstractmethod
    def fit(
        self, model: LoadedModel, train: Split, config: InterventionConfig, *, seed: int
    ) -> InterventionState:
        """Train on a source distribution's train split; return a serialisable state."""

    @abstractmethod
    def score_pairs(
        self,
        model: LoadedModel,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
        *,
        seed: int,
    ) -> ScoredPairs:
        """Return p(correct) for each pair. Must not depend on batch size or response order."""
