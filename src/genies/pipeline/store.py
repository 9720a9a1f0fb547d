"""The result store: content-addressed evaluations and trained states, safe to share and to kill.

Layout (``genies.paths.store_dir()`` by default)::

    <store>/evaluations/<key[:2]>/<key>.json   one EvaluationRecord (genies.records), written atomically
    <store>/states/<key>/                      one InterventionState: state.json (+ tensors.safetensors),
                                               inputs.json (what the key hashes) and _COMPLETE last
    <store>/locks/<key>.lock                   one file lock per key (filelock)
    <store>/upstream/                          imported paper results; never written here

Entries (all JSON; NaN is written as ``NaN``):

* an evaluation is a ``genies.records.EvaluationRecord`` (schema documented there): per-pair
  ``p_correct`` and ``pair_ids``, ``n``, ``ties``, ``dropped``, ``metrics``, ``timings``
  (``score_s``, and ``fit_s`` when the state was fitted for it) and ``versions`` (genies, torch,
  transformers, git commit). Its ``info`` holds ``state_key`` and ``state_id`` (the state it was
  scored with), ``pairs_requested`` (before over-length drops), ``device``, ``dtype`` and
  ``intervention`` (the intervention's own diagnostics);
* a state directory holds the ``InterventionState`` files (``state.json``, ``tensors.safetensors``
  when it has tensors), ``inputs.json`` (the inputs its key hashes, plus ``fit_s``) and
  ``_COMPLETE`` = ``{"key", "state_id", "created", "files": {name: {"size", "sha256"}}}``.
  ``state_id`` is new each time a state is (re)computed.

Why it is safe:

* every file is written with a temp file + rename (``genies.io``), and a state directory is assembled
  under ``states/.tmp-*`` and renamed into place only after its ``_COMPLETE`` sentinel exists, so a
  reader sees a complete entry or none;
* computing an entry holds its key's file lock, and the entry is re-checked after the lock is taken,
  so two concurrent runs compute each key once;
* ``_COMPLETE`` lists every file with its size and sha256, and a record must parse and be coherent,
  so a truncated or tampered entry is reported (a warning), counted, and recomputed — never used.

Test hook: with ``GENIES_TEST_KILL_AFTER_WRITES=N`` in the environment the process sends itself
SIGKILL right after its N-th completed store write (an evaluation record or a state);
``N:INT`` sends SIGINT instead (a deterministic Ctrl-C). The kill-and-resume tests use it to stop a
run at a known point; it does nothing otherwise.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pydantic

from genies.api.intervention import InterventionState
from genies.errors import StoreError
from genies.io import atomic_write_json
from genies.records import EvaluationRecord

SENTINEL = "_COMPLETE"
INPUTS_FILE = "inputs.json"
KILL_ENV = "GENIES_TEST_KILL_AFTER_WRITES"


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def summary(self) -> str:
        return (
            f"evaluations: {self.evaluations_computed} computed, {self.evaluations_reused} reused; "
            f"states: {self.states_computed} computed, {self.states_reused} reused; "
            f"corrupt: {self.corrupt_entries}; stale: {self.stale_entries}; "
            f"forward passes: {self.forward_passes}; model loads: {self.model_loads}"
        )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ResultStore:
    """Evaluation records and intervention states under one root directory (see module docstring)."""

    def __init__(self, root: str | os.PathLike[str], *, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root).expanduser()
        self.evaluations_dir = self.root / "evaluations"
        self.states_dir = self.root / "states"
        self.locks_dir = self.root / "locks"
        self.counters = StoreCounters()
        self._warn = warn or (lambda msg: None)
        self._writes = 0

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

    # ---------------------------------------------------------------- paths & locks

    def evaluation_path(self, key: str) -> Path:
        return self.evaluations_dir / key[:2] / f"{key}.json"

    def state_path(self, key: str) -> Path:
        return self.states_dir / key

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold ``key``'s file lock (blocks while another process computes the same key)."""
        from filelock import FileLock

        self.locks_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.locks_dir / f"{key}.lock")):
            yield

    # ---------------------------------------------------------------- writes

    def _wrote(self) -> None:
        """Count a completed write; the kill test hook lives here (see module docstring)."""
        self._writes += 1
        hook = os.environ.get(KILL_ENV)
        if not hook:
            return
        count, _, name = hook.partition(":")
        if count.isdigit() and self._writes == int(count):
            os.kill(os.getpid(), signal.SIGINT if name.upper() in ("INT", "SIGINT") else signal.SIGKILL)

    def _write_json(self, path: Path, obj: Any) -> None:
        try:
            atomic_write_json(path, obj)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None

    # ---------------------------------------------------------------- evaluations

    def load_evaluation(self, key: str, *, report: bool = True) -> EvaluationRecord | None:
        """The stored record for ``key``; None when absent, or when corrupt (then warned and counted,
        unless ``report`` is False: a re-check of an entry already reported)."""
        path = self.evaluation_path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            problem = exc.strerror or str(exc)
        else:
            try:
                record = EvaluationRecord.model_validate(json.loads(text))
            except (ValueError, pydantic.ValidationError) as exc:
                problem = str(exc).splitlines()[0]
            else:
                problem = _record_problem(record, key)
                if problem is None:
                    return record
        if report:
            self._corrupt(path, problem)
        return None

    def save_evaluation(self, record: EvaluationRecord) -> None:
        self._write_json(self.evaluation_path(record.key), record.model_dump(mode="json"))
        self._wrote()

    def _corrupt(self, path: Path, reason: str) -> None:
        """Warn about and count a damaged entry (it is then recomputed, never used)."""
        self.counters.corrupt_entries += 1
        self.warn(f"corrupt store entry {path} ({reason}); recomputing it")
        return None

    # ---------------------------------------------------------------- states

    def state_sentinel(self, key: str) -> dict[str, Any] | None:
        """The parsed ``_COMPLETE`` of ``key``'s state (no file checks); None if absent or unreadable."""
        try:
            doc = json.loads((self.state_path(key) / SENTINEL).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) and doc.get("key") == key else None

    def load_state(self, key: str, *, report: bool = True) -> tuple[InterventionState, str] | None:
        """``(state, state_id)`` for a complete, intact state; None if absent or broken (then warned
        and counted, unless ``report`` is False)."""
        d = self.state_path(key)
        if not d.exists():
            return None
        problem = self._state_problem(key)
        if problem is None:
            try:
                state = InterventionState.load(d)
            except StoreError as exc:
                problem = str(exc)
            else:
                return state, self.state_sentinel(key)["state_id"]  # type: ignore[index]
        if report:
            self._corrupt(d, problem)
        return None

    def _state_problem(self, key: str) -> str | None:
        """Why ``key``'s state directory cannot be trusted (sentinel and file checks), or None."""
        d = self.state_path(key)
        sentinel = self.state_sentinel(key)
        if sentinel is None:
            return f"missing or unreadable {SENTINEL}"
        files = sentinel.get("files")
        if not isinstance(files, dict) or not isinstance(sentinel.get("state_id"), str):
            return f"malformed {SENTINEL}"
        for name, meta in files.items():
            p = d / name
            try:
                if p.stat().st_size != meta["size"] or _sha256(p) != meta["sha256"]:
                    return f"{name} does not match {SENTINEL}"
            except (OSError, KeyError, TypeError):
                return f"{name} is missing"
        return None

    def save_state(self, key: str, state: InterventionState, inputs: dict[str, Any]) -> str:
        """Write ``state`` as ``states/<key>/`` (replacing any old one); returns its new state id.

        The directory is assembled beside its final place and renamed in only when complete, so a
        crash or a full disk leaves either the previous entry or nothing — never a partial one.
        """
        final = self.state_path(key)
        tmp = self.states_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        state_id = uuid.uuid4().hex
        try:
            tmp.mkdir(parents=True)
            state.save(tmp)
            self._write_json(tmp / INPUTS_FILE, inputs)
            files = {
                p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
                for p in sorted(tmp.iterdir())
                if p.is_file() and not p.name.startswith(".")
            }
            self._write_json(
                tmp / SENTINEL, {"key": key, "state_id": state_id, "created": _now(), "files": files}
            )
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
        self._wrote()
        return state_id


def _record_problem(record: EvaluationRecord, key: str) -> str | None:
    """Why a parsed record cannot be trusted, or None."""
    if record.key != key:
        return f"its key is {record.key!r}, not {key!r}"
    if record.origin != "genies":
        return "it is not a genies evaluation"
    if not (len(record.pair_ids) == len(record.p_correct) == record.n):
        return "n, pair_ids and p_correct disagree"
    return None
