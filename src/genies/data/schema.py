"""Typed GENIES data: examples, splits, distributions and preference pairs.

Only ``prompt`` and ``responses`` carry meaning (upstream-reference §1.2); every other key of an
example is kept verbatim in ``Example.extra`` for display but never used for training or scoring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

PairMode = Literal["all", "one_per_example"]
SplitName = Literal["train", "test"]


@dataclass(frozen=True)
class Example:
    """One prompt with 2–4 responses, exactly one of them preferred (score 1)."""

    prompt: str
    responses: tuple[tuple[str, float], ...]  # (text, score) in file order
    index: int = 0  # position in its split
    extra: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def texts(self) -> list[str]:
        return [t for t, _ in self.responses]

    @property
    def best_index(self) -> int:
        return next(i for i, (_, s) in enumerate(self.responses) if s == 1)

    @property
    def best(self) -> str:
        return self.responses[self.best_index][0]

    @property
    def worse(self) -> list[str]:
        return [t for t, s in self.responses if s != 1]


@dataclass(frozen=True)
class Pair:
    """A (prompt, correct, incorrect) comparison derived from one example.

    ``id`` is ``"<example index>/<response index of the incorrect response>"``: stable across runs, so
    stored per-pair results can be joined back to the data.
    """

    id: str
    prompt: str
    correct: str
    incorrect: str
    example_index: int


def _pair_rng(seed: int, example_index: int) -> np.random.Generator:
    # One generator per example: a choice for example i never depends on which other examples exist
    # (e.g. under --limit), and never touches Python's or numpy's global RNG.
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(example_index)])


@dataclass
class Split:
    """A list of examples (a distribution's ``train`` or ``test`` split)."""

    name: str
    examples: list[Example]
    distribution_id: str = ""

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self):
        return iter(self.examples)

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples (no shuffling, like upstream's ``set_max_examples``)."""
        if n is None or n >= len(self.examples):
            return self
        return Split(self.name, self.examples[:n], self.distribution_id)

    def to_pairs(self, mode: PairMode = "all", seed: int = 0) -> list[Pair]:
        """Turn examples into preference pairs.

        ``all``: every (best, worse) combination, grouped by example in file order (upstream's final
        evaluation). ``one_per_example``: one worse response per example, chosen from ``seed``
        (upstream's training sets), deterministic and independent of the global RNG.
        """
        if mode not in ("all", "one_per_example"):
            raise ValueError(f"unknown pair mode {mode!r}; use 'all' or 'one_per_example'")
        pairs: list[Pair] = []
        for ex in self.examples:
            best = ex.best
            worse = [(j, t) for j, (t, s) in enumerate(ex.responses) if s != 1]
            if mode == "one_per_example":
                worse = [worse[int(_pair_rng(seed, ex.index).integers(len(worse)))]]
            for j, text in worse:
                pairs.append(Pair(f"{ex.index}/{j}", ex.prompt, best, text, ex.index))
        return pairs

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the meaningful content (prompts, responses, scores) in order."""
        h = hashlib.sha256()
        for ex in self.examples:
            h.update(json.dumps([ex.prompt, [list(r) for r in ex.responses]], ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()


@dataclass
class Distribution:
    """A GENIES distribution: an id (its directory name) with ``train`` and ``test`` splits."""

    id: str
    train: Split
    test: Split
    path: Path | None = None

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; use 'train' or 'test'")
        return self.train if name == "train" else self.test

    @property
    def responses_per_example(self) -> list[int]:
        """Sorted distinct response counts over both splits."""
        return sorted({len(e.responses) for s in (self.train, self.test) for e in s.examples})


def examples_from_records(records: Sequence[dict], split: str = "", distribution_id: str = "") -> Split:
    """Build a Split from already-validated JSON records (see ``genies.data.validation``)."""
    exs = [
        Example(
            prompt=r["prompt"],
            responses=tuple((str(t), float(s)) for t, s in r["responses"].items()),
            index=i,
            extra={k: v for k, v in r.items() if k not in ("prompt", "responses")},
        )
        for i, r in enumerate(records)
    ]
    return Split(split, exs, distribution_id)
