"""The result store: content-addressed results that are verified every time they are served.

Layout (``genies.paths.store_dir()`` by default)::

    <store>/evaluations/<key[:2]>/<key>.json   one EvaluationRecord (genies.records)
    <store>/states/<key>/                      one InterventionState: state.json (+ tensors.safetensors),
                                               inputs.json (the node inputs the key hashes) and
                                               _COMPLETE (written last)
    <store>/lengths/<key[:2]>/<key>.json       one LengthsRecord (token counts of a split's examples)
    <store>/activations/                       the activation cache (genies.models.activation_cache)
    <store>/checkpoints/<key>/                 ctx.checkpoint_dir of a node in progress
    <store>/locks/<key>.lock                   one file lock per key (filelock)
    <store>/generation.json                    the store's run generation (see below)
    <store>/upstream/                          imported paper results (genies.results.upstream)

**What is served.** A result is used only if it verifies; anything else is reported by file path
(a warning), counted as corrupt, and recomputed — never used, never fatal:

* an evaluation record must parse as an ``EvaluationRecord`` (UTF-8 JSON of the right schema), its
  ``inputs`` must hash to its key and file name, its descriptive fields (intervention, model,
  distributions, limit, …) must be those its inputs say, its ``pair_ids`` must be the planned ones,
  ``p_correct`` finite and in [0, 1], ``n``/``ties``/``dropped`` must follow, and its ``metrics``
  must equal ``genies.metrics.summarize(p_correct)`` when ``metrics_version`` is the current
  ``METRICS_VERSION`` (records of another version get their figures recomputed silently);
* a state directory must have a readable ``_COMPLETE`` listing every file with its size and sha256,
  ``inputs.json`` must hash to the key, the state must load, and its ``meta["intervention"]`` (where
  present) must name the intervention of its inputs;
* a lengths record must hash to its key and be self-consistent.

**Generations and ``--force``.** ``generation.json`` holds a counter. A forced run takes a new
generation G (``new_generation``) and accepts only results computed in generation >= G, so every
process of that run recomputes each node once and agrees on what is stale. Every result records its
generation and the generation of each node it was computed from (``deps``); a result whose dependency
has since been recomputed in a newer generation is stale (reported, recomputed). A result computed by
a run that is not forced gets the highest generation of its dependencies (0 without any), so
repairing a damaged entry never makes its dependents stale: a repaired store is complete.

**Why it is safe to kill and to share.** Every file is written with a temp file + rename
(``genies.io``); a state directory is assembled under ``states/.tmp-*`` and renamed into place only
after its ``_COMPLETE`` exists; computing a result holds its key's file lock and re-checks the store
first, so concurrent processes compute each key once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pydantic

from genies.api.intervention import InterventionState
from genies.errors import StoreError
from genies.hashing import sha256_file
from genies.io import atomic_write_json
from genies.pipeline.graph import node_key
from genies.pipeline.nodes import describe_evaluation
from genies.records import EvaluationRecord, LengthsRecord

SENTINEL = "_COMPLETE"
INPUTS_FILE = "inputs.json"
GENERATION_FILE = "generation.json"


@dataclass
class StoreCounters:
    """What a run did with the store; printed at the end of ``genies run``."""

    evaluations_computed: int = 0
    evaluations_reused: int = 0
    states_computed: int = 0
    states_reused: int = 0
    corrupt_entries: int = 0
    stale_entries: int = 0
    forward_passes: int = 0
    model_loads: int = 0
    activations_computed: int = 0
    activations_reused: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: dict[str, int]) -> None:
        for k, v in other.items():
            if hasattr(self, k):
                setattr(self, k, getattr(self, k) + int(v))

    def summary(self) -> str:
        text = (
            f"evaluations: {self.evaluations_computed} computed, {self.evaluations_reused} reused; "
            f"states: {self.states_computed} computed, {self.states_reused} reused; "
            f"corrupt: {self.corrupt_entries}; stale: {self.stale_entries}; "
            f"forward passes: {self.forward_passes}; model loads: {self.model_loads}"
        )
        if self.activations_computed or self.activations_reused:
            text += f"; activations: {self.activations_computed} computed, {self.activations_reused} reused"
        return text


@dataclass
class StoredState:
    """A verified state entry: the state, its generation and the dependency generations it recorded."""

    state: InterventionState
    generation: int
    deps: dict[str, int]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (metrics of an empty evaluation are NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _read_text(path: Path) -> str:
    """A store file as UTF-8 text; OSError/UnicodeDecodeError propagate (the caller names the file)."""
    return path.read_bytes().decode("utf-8")


def evaluation_problem(record: EvaluationRecord, key: str) -> tuple[EvaluationRecord, str | None]:
    """Why a genies record cannot be served for ``key`` (None: it verifies), and the record to serve
    (figures recomputed from ``p_correct`` when they were computed under another metrics version)."""
    from genies import metrics
    from genies.errors import ValidationError

    if record.origin != "genies":
        return record, "it is not a genies evaluation"
    if record.key != key:
        return record, f"its key is {record.key!r}, not {key!r}"
    inputs = record.inputs
    if not isinstance(inputs, dict) or inputs.get("kind") != "evaluation" or node_key(inputs) != key:
        return record, "its inputs do not hash to its key"
    try:
        expected = describe_evaluation(inputs)
        planned, requested = list(inputs["eval"]["pair_ids"]), int(inputs["eval"]["requested"])
    except (KeyError, TypeError, ValueError):
        return record, "its inputs are not those of an evaluation"
    for name, value in expected.items():
        if not _same(getattr(record, name), value):
            return record, f"its {name} does not match its inputs"
    if record.pair_ids != planned:
        return record, "its pair_ids are not the planned pairs"
    if not (record.n == len(record.pair_ids) == len(record.p_correct)):
        return record, "n, pair_ids and p_correct disagree"
    if record.dropped != requested - record.n:
        return record, "its dropped count does not match its inputs"
    try:
        p = metrics.as_probabilities(record.p_correct)
    except ValidationError as exc:
        return record, f"p_correct: {exc}"
    if record.ties != metrics.tie_count(p):
        return record, "its tie count does not follow from p_correct"
    figures = metrics.summarize(p)
    if record.metrics_version != metrics.METRICS_VERSION:
        return record.model_copy(
            update={"metrics": figures, "metrics_version": metrics.METRICS_VERSION}
        ), None
    if not _same(dict(record.metrics), figures):
        return record, "its metrics do not follow from p_correct"
    return record, None


def evaluation_record(key: str, inputs: dict[str, Any], p_correct: Any, **fields: Any) -> EvaluationRecord:
    """A record for evaluation node ``key`` whose figures are derived from ``p_correct`` (valid input
    is checked with ``genies.metrics.as_probabilities``); ``fields`` add generation, deps, info, …"""
    from genies import metrics

    p = metrics.as_probabilities(p_correct)
    sel = inputs["eval"]
    return EvaluationRecord(
        key=key,
        **describe_evaluation(inputs),
        inputs=inputs,
        pair_ids=list(sel["pair_ids"]),
        p_correct=[float(x) for x in p],
        n=len(p),
        ties=metrics.tie_count(p),
        dropped=int(sel["requested"]) - len(p),
        metrics=metrics.summarize(p),
        metrics_version=metrics.METRICS_VERSION,
        **fields,
    )


def lengths_problem(record: LengthsRecord, key: str) -> str | None:
    inputs = record.inputs
    if record.key != key or not isinstance(inputs, dict) or node_key(inputs) != key:
        return "its inputs do not hash to its key"
    if inputs.get("kind") != "lengths":
        return "it is not a lengths record"
    if record.over_length != [i for i, n in enumerate(record.longest) if n > record.max_length]:
        return "its over-length examples do not follow from its lengths"
    return None


class ResultStore:
    """Verified results under one root directory (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], *, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root).expanduser()
        self.evaluations_dir = self.root / "evaluations"
        self.states_dir = self.root / "states"
        self.lengths_dir = self.root / "lengths"
        self.activations_dir = self.root / "activations"
        self.checkpoints_dir = self.root / "checkpoints"
        self.locks_dir = self.root / "locks"
        self.counters = StoreCounters()
        self._warn = warn or (lambda msg: None)

    # ---------------------------------------------------------------- setup

    def check_writable(self) -> None:
        """Create the store's folders and prove a file can be written there (cheap, before any work)."""
        try:
            for d in (self.evaluations_dir, self.states_dir, self.locks_dir):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.locks_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"result store {self.root} is not writable: {exc.strerror or exc}") from None

    def warn(self, message: str) -> None:
        self._warn(message)

    def corrupt(self, path: Path, reason: str) -> None:
        """Warn about and count a damaged entry (it is then recomputed, never used)."""
        self.counters.corrupt_entries += 1
        self.warn(f"corrupt store entry {path} ({reason}); recomputing it")

    def _write_json(self, path: Path, obj: Any) -> None:
        try:
            atomic_write_json(path, obj)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    # ---------------------------------------------------------------- locks and generations

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold ``key``'s file lock (blocks while another process computes the same key)."""
        from filelock import FileLock

        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks_dir / f"{key}.lock")):
            yield

    def generation(self) -> int:
        """The store's current run generation (0 until a run was forced)."""
        try:
            value = json.loads(_read_text(self.root / GENERATION_FILE)).get("generation", 0)
        except (OSError, ValueError, AttributeError):
            return 0
        return value if isinstance(value, int) and value >= 0 else 0

    def new_generation(self) -> int:
        """Start a forced run: increment the generation (locked) and return it."""
        with self.lock("generation"):
            g = self.generation() + 1
            self._write_json(self.root / GENERATION_FILE, {"generation": g, "created": _now()})
        return g

    # ---------------------------------------------------------------- evaluations

    def evaluation_path(self, key: str) -> Path:
        return self.evaluations_dir / key[:2] / f"{key}.json"

    def load_evaluation(self, key: str, *, report: bool = True) -> EvaluationRecord | None:
        """The verified record of ``key``; None when absent or damaged (then reported unless not
        ``report``: a re-check of an entry already reported)."""
        path = self.evaluation_path(key)
        try:
            text = _read_text(path)
        except FileNotFoundError:
            return None
        except UnicodeDecodeError:
            problem = "it is not UTF-8 text"
        except OSError as exc:
            problem = exc.strerror or str(exc)
        else:
            try:
                record = EvaluationRecord.model_validate(json.loads(text))
            except (ValueError, pydantic.ValidationError) as exc:
                problem = "not a valid evaluation record: " + str(exc).splitlines()[0]
            else:
                record, problem = evaluation_problem(record, key)
                if problem is None:
                    return record
        if report:
            self.corrupt(path, problem)
        return None

    def save_evaluation(self, record: EvaluationRecord) -> None:
        self._write_json(self.evaluation_path(record.key), record.model_dump(mode="json"))

    # ---------------------------------------------------------------- lengths

    def lengths_path(self, key: str) -> Path:
        return self.lengths_dir / key[:2] / f"{key}.json"

    def load_lengths(self, key: str, *, report: bool = True) -> LengthsRecord | None:
        path = self.lengths_path(key)
        try:
            record = LengthsRecord.model_validate(json.loads(_read_text(path)))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, pydantic.ValidationError) as exc:
            problem: str | None = "not a valid lengths record: " + (str(exc).splitlines() or [""])[0]
        else:
            problem = lengths_problem(record, key)
            if problem is None:
                return record
        if report:
            self.corrupt(path, problem or "unreadable")
        return None

    def save_lengths(self, record: LengthsRecord) -> None:
        self._write_json(self.lengths_path(record.key), record.model_dump(mode="json"))

    # ---------------------------------------------------------------- states

    def state_path(self, key: str) -> Path:
        return self.states_dir / key

    def state_sentinel(self, key: str) -> dict[str, Any] | None:
        """The parsed ``_COMPLETE`` of ``key``'s state (no file checks); None if absent or unreadable."""
        try:
            doc = json.loads(_read_text(self.state_path(key) / SENTINEL))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("key") == key else None

    def state_generation(self, key: str) -> int | None:
        """The generation of ``key``'s state entry (cheap: its sentinel only), None if unknown."""
        doc = self.state_sentinel(key)
        g = doc.get("generation") if doc else None
        return g if isinstance(g, int) else None

    def load_state(self, key: str, *, report: bool = True) -> StoredState | None:
        """The verified state of ``key``; None if absent or damaged (then reported unless not ``report``)."""
        d = self.state_path(key)
        if not d.exists():
            return None
        problem, sentinel = self._state_problem(key)
        if problem is None:
            try:
                state = InterventionState.load(d)
            except StoreError as exc:
                problem = str(exc)
            else:
                inputs = json.loads(_read_text(d / INPUTS_FILE))
                made_by = state.meta.get("intervention", inputs.get("intervention"))
                if made_by != inputs.get("intervention"):
                    problem = f"its state was made by {made_by!r}, not {inputs.get('intervention')!r}"
                else:
                    assert sentinel is not None
                    return StoredState(state, int(sentinel["generation"]), dict(sentinel.get("deps", {})))
        if report:
            self.corrupt(d, problem)
        return None

    def state_keys(self) -> list[str]:
        """The keys of every state directory (complete or not; sorted), for listing and inspection."""
        if not self.states_dir.is_dir():
            return []
        return sorted(p.name for p in self.states_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def state_problem(self, key: str) -> str | None:
        """Why ``key``'s state directory cannot be trusted, or None (``genies show-state``)."""
        return self._state_problem(key)[0]

    def _state_problem(self, key: str) -> tuple[str | None, dict[str, Any] | None]:
        """Why ``key``'s state directory cannot be trusted (sentinel, file and key checks), or None."""
        d = self.state_path(key)
        sentinel = self.state_sentinel(key)
        if sentinel is None:
            return f"missing or unreadable {SENTINEL}", None
        files = sentinel.get("files")
        if not isinstance(files, dict) or not isinstance(sentinel.get("generation"), int):
            return f"malformed {SENTINEL}", None
        for name, meta in files.items():
            p = d / name
            try:
                if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
                    return f"{name} does not match {SENTINEL}", None
            except (OSError, KeyError, TypeError):
                return f"{name} is missing", None
        try:
            inputs = json.loads(_read_text(d / INPUTS_FILE))
        except (OSError, ValueError):
            return f"unreadable {INPUTS_FILE}", None
        if not isinstance(inputs, dict) or node_key(inputs) != key:
            return f"its {INPUTS_FILE} does not hash to its key", None
        return None, sentinel

    def save_state(
        self,
        key: str,
        state: InterventionState,
        inputs: dict[str, Any],
        *,
        generation: int,
        deps: dict[str, int] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write ``state`` as ``states/<key>/`` (replacing any old one).

        The directory is assembled beside its final place and renamed in only when complete, so a
        crash or a full disk leaves either the previous entry or nothing — never a partial one.
        """
        final = self.state_path(key)
        tmp = self.states_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            state.save(tmp)
            self._write_json(tmp / INPUTS_FILE, inputs)
            files = {
                p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
                for p in sorted(tmp.iterdir())
                if p.is_file() and not p.name.startswith(".")
            }
            sentinel = {
                "key": key,
                "generation": generation,
                "deps": deps or {},
                "created": _now(),
                "files": files,
                **(extra or {}),
            }
            self._write_json(tmp / SENTINEL, sentinel)
            if final.exists():
                trash = self.states_dir / f".old-{key}-{uuid.uuid4().hex[:8]}"
                final.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)
            tmp.rename(final)
        except OSError as exc:
            raise StoreError(f"cannot write state {final}: {exc.strerror or exc}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def discard_state(self, key: str, reason: str) -> None:
        """Report ``key``'s state as unusable and remove it, so that it is fitted again."""
        d = self.state_path(key)
        self.corrupt(d, reason)
        if d.exists():
            trash = self.states_dir / f".bad-{key}-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(OSError):
                d.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    # ---------------------------------------------------------------- checkpoints

    def checkpoint_dir(self, key: str) -> Path:
        return self.checkpoints_dir / key

    def clear_checkpoint(self, key: str) -> None:
        shutil.rmtree(self.checkpoint_dir(key), ignore_errors=True)
