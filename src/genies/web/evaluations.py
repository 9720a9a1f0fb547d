"""Stored evaluations, indexed by the split they scored, for the per-pair p(correct) columns.

The result store keeps one ``genies.records.EvaluationRecord`` per file under
``<store>/evaluations/<key[:2]>/<key>.json``. The browser only ever reads those files through
``read_evaluation`` below — one small function, so a change of the store's layout or record schema
is adapted in one place — and never writes to the store.

The index is built in the background once the server listens (a store can hold thousands of
records: 2,000 records of 750 pairs take ~2 s to read and ~60 MB to keep), or by the first page that
needs it, whichever comes first; then it is refreshed incrementally: a request re-lists the store's folders at most every
``refresh_s`` seconds and reads only files it has not seen (or whose size/mtime changed), so an
evaluation written by a run in progress shows up without a restart.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydantic

from genies.records import EvaluationRecord

WRONG_BELOW = 0.5  # a pair is "wrong" when p(correct) < 0.5; exactly 0.5 is a tie (counts half)


def read_evaluation(path: Path) -> EvaluationRecord | None:
    """The evaluation record stored at ``path``, or None if it is unreadable, invalid or incoherent.

    The file's JSON validated as an ``EvaluationRecord``; pydantic parses it directly, 4x faster than
    ``json.loads`` + validation on 750-pair records, and accepts ``NaN`` as the store writes it. A
    record whose file name is not its key, that is not a genies evaluation, or whose
    ``pair_ids``/``p_correct``/``n`` disagree is ignored (the store reports and recomputes those).
    """
    try:
        record = EvaluationRecord.model_validate_json(path.read_bytes())
    except (OSError, ValueError, pydantic.ValidationError):
        return None
    if record.key != path.stem or record.origin != "genies":
        return None
    if not (len(record.pair_ids) == len(record.p_correct) == record.n):
        return None
    return record


class PairLayout:
    """The pair ids of a record, parsed once and shared by every record with the same ids.

    Records of one split (one per model, intervention, training distribution...) usually list the
    same pairs in the same order; sharing the layout keeps thousands of records small (each keeps
    only its p(correct) as an array of doubles).
    """

    def __init__(self, pair_ids: tuple[str, ...]) -> None:
        self.pair_ids = pair_ids
        self.example_of: list[int] = []
        self.by_example: dict[int, list[tuple[int, int]]] = {}  # example -> [(response, position)]
        for pos, pid in enumerate(pair_ids):
            ex, _, resp = pid.partition("/")
            try:
                e, r = int(ex), int(resp)
            except ValueError:
                e, r = -1, -1  # not a genies pair id: never matches an example
            self.example_of.append(e)
            self.by_example.setdefault(e, []).append((r, pos))


@dataclass
class Evaluation:
    """What the browser keeps of one record: who scored which split, and p(correct) per pair."""

    key: str
    intervention: str
    model: str
    train_distribution: str | None
    eval_distribution: str
    eval_split: str
    eval_fingerprint: str | None
    limit: int | None
    created: str
    accuracy: float | None
    layout: PairLayout = field(repr=False)
    p: array = field(repr=False)  # p(correct) in the layout's order

    @property
    def label(self) -> str:
        """``model · intervention ← train distribution`` (what a column header shows)."""
        base = f"{self.model} · {self.intervention}"
        return f"{base} ← {self.train_distribution}" if self.train_distribution else base

    @property
    def short_key(self) -> str:
        return self.key[:8]

    @property
    def n(self) -> int:
        return len(self.p)

    def wrong_examples(self) -> set[int]:
        """Indices of the examples with at least one pair this evaluation gets wrong."""
        ex = self.layout.example_of
        return {ex[i] for i, p in enumerate(self.p) if p < WRONG_BELOW and ex[i] >= 0}

    def pairs_of(self, example_index: int) -> dict[int, float]:
        """{incorrect response index: p(correct)} for one example (empty when it was not scored)."""
        return {r: self.p[pos] for r, pos in self.layout.by_example.get(example_index, ())}


def _summary(record: EvaluationRecord, layouts: dict[tuple[str, ...], PairLayout]) -> Evaluation:
    acc = record.metrics.get("accuracy")
    ids = tuple(record.pair_ids)
    layout = layouts.get(ids)
    if layout is None:
        layout = layouts[ids] = PairLayout(ids)
    return Evaluation(
        key=record.key,
        intervention=record.intervention,
        model=str(record.model.get("name") or record.model.get("path") or "?"),
        train_distribution=record.train_distribution,
        eval_distribution=record.eval_distribution,
        eval_split=record.eval_split,
        eval_fingerprint=record.eval_fingerprint,
        limit=record.limit,
        created=record.created,
        accuracy=None if acc is None or math.isnan(acc) else float(acc),
        layout=layout,
        p=array("d", record.p_correct),
    )


class EvaluationIndex:
    """Evaluations of a result store grouped by (distribution, split); thread-safe, read-only."""

    def __init__(self, store: Path | None, *, refresh_s: float = 2.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) when read
        self._by_file: dict[Path, Evaluation | None] = {}
        self._layouts: dict[tuple[str, ...], PairLayout] = {}
        self._checked = -math.inf
        self.build_seconds: float | None = None  # the first full scan, for the start-up log

    def _scan(self) -> Iterable[os.DirEntry[str]]:
        root = None if self.store is None else self.store / "evaluations"
        try:
            shards = [e for e in os.scandir(root) if e.is_dir()] if root is not None else []
        except OSError:
            return []
        out = []
        for shard in shards:
            try:
                out += [e for e in os.scandir(shard.path) if e.name.endswith(".json") and e.is_file()]
            except OSError:
                continue
        return out

    def refresh(self, *, force: bool = False) -> None:
        """Re-list the store (at most every ``refresh_s`` s) and read new or changed records."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked < self.refresh_s:
                return
            start = time.perf_counter()
            seen: dict[Path, tuple[int, int]] = {}
            for entry in self._scan():
                try:
                    st = entry.stat()
                except OSError:
                    continue
                path = Path(entry.path)
                seen[path] = (st.st_size, st.st_mtime_ns)
                if self._files.get(path) != seen[path]:
                    record = read_evaluation(path)
                    self._by_file[path] = _summary(record, self._layouts) if record is not None else None
            for gone in set(self._files) - set(seen):
                self._by_file.pop(gone, None)
            self._files = seen
            self._layouts = {e.layout.pair_ids: e.layout for e in self._by_file.values() if e is not None}
            if self.build_seconds is None:
                self.build_seconds = time.perf_counter() - start
            self._checked = time.monotonic()

    def all(self) -> list[Evaluation]:
        self.refresh()
        return sorted(
            (e for e in self._by_file.values() if e is not None),
            key=lambda e: (e.model, e.intervention, e.train_distribution or "", e.key),
        )

    def counts(self) -> dict[str, int]:
        """Number of evaluations per distribution id (both splits)."""
        out: dict[str, int] = {}
        for e in self.all():
            out[e.eval_distribution] = out.get(e.eval_distribution, 0) + 1
        return out

    def for_split(self, distribution: str, split: str) -> list[Evaluation]:
        return [e for e in self.all() if e.eval_distribution == distribution and e.eval_split == split]

    def get(self, key: str) -> Evaluation | None:
        return next((e for e in self.all() if e.key == key), None)
