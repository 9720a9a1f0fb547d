"""The result store: atomic entries, corruption detection, locks, the kill hook."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from genies.api.intervention import InterventionState
from genies.errors import StoreError
from genies.pipeline import store as store_mod
from genies.pipeline.store import SENTINEL, ResultStore
from genies.records import EvaluationRecord


def _record(key: str = "ab" * 16, n: int = 3) -> EvaluationRecord:
    return EvaluationRecord(
        key=key,
        intervention="test_length",
        eval_distribution="toy_b",
        pair_ids=[f"{i}/1" for i in range(n)],
        p_correct=[0.25 * (i + 1) for i in range(n)],
        n=n,
    )


@pytest.fixture
def store(tmp_path):
    warnings: list[str] = []
    s = ResultStore(tmp_path / "store", warn=warnings.append)
    s.check_writable()
    s.warnings = warnings  # type: ignore[attr-defined]
    return s


def test_evaluation_round_trip_and_layout(store):
    rec = _record()
    store.save_evaluation(rec)
    path = store.root / "evaluations" / rec.key[:2] / f"{rec.key}.json"
    assert path.is_file()
    assert store.load_evaluation(rec.key) == rec
    assert store.load_evaluation("cd" * 16) is None
    assert store.counters.corrupt_entries == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated JSON
        lambda text: "",  # empty file
        lambda text: text.replace('"n": 3', '"n": 2'),  # incoherent record
        lambda text: text.replace('"kind": "evaluation"', '"kind": "other"'),  # schema violation
    ],
)
def test_corrupt_evaluation_is_reported_and_not_used(store, damage):
    rec = _record()
    store.save_evaluation(rec)
    path = store.evaluation_path(rec.key)
    path.write_text(damage(path.read_text()))
    assert store.load_evaluation(rec.key) is None
    assert store.counters.corrupt_entries == 1
    assert len(store.warnings) == 1 and "corrupt store entry" in store.warnings[0]


def test_record_under_the_wrong_key_is_corrupt(store):
    rec = _record()
    store.save_evaluation(rec)
    other = "cd" * 16
    store.evaluation_path(other).parent.mkdir(parents=True, exist_ok=True)
    store.evaluation_path(rec.key).rename(store.evaluation_path(other))
    assert store.load_evaluation(other) is None
    assert "its key is" in store.warnings[0]


def _state() -> InterventionState:
    return InterventionState(meta={"intervention": "x", "v": 1}, tensors={"w": torch.arange(4.0)})


def test_state_round_trip_has_sentinel_written_with_file_hashes(store):
    sid = store.save_state("k1", _state(), {"kind": "state"})
    d = store.state_path("k1")
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [SENTINEL, "inputs.json", "state.json", "tensors.safetensors"]
    )
    sentinel = json.loads((d / SENTINEL).read_text())
    assert sentinel["state_id"] == sid and set(sentinel["files"]) == {
        "inputs.json",
        "state.json",
        "tensors.safetensors",
    }
    state, got_sid = store.load_state("k1")
    assert got_sid == sid and state.meta == {"intervention": "x", "v": 1}
    assert torch.equal(state.tensors["w"], torch.arange(4.0))
    # Replacing a state gives it a new id (what makes dependent evaluations stale).
    assert store.save_state("k1", _state(), {}) != sid
    assert not [p for p in store.states_dir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / SENTINEL).unlink(),
        lambda d: (d / "tensors.safetensors").unlink(),
        lambda d: (d / "tensors.safetensors").write_bytes((d / "tensors.safetensors").read_bytes()[:-3]),
        lambda d: (d / "state.json").write_text('{"meta": {}, "tensors": ["w"]}'),
        lambda d: (d / SENTINEL).write_text("{"),
    ],
    ids=["no-sentinel", "missing-file", "truncated-tensors", "edited-meta", "bad-sentinel"],
)
def test_broken_state_is_reported_and_not_used(store, damage):
    store.save_state("k1", _state(), {})
    damage(store.state_path("k1"))
    assert store.load_state("k1") is None
    assert store.counters.corrupt_entries == 1 and "corrupt store entry" in store.warnings[0]


def test_failed_state_write_leaves_no_entry_and_keeps_the_old_one(store, monkeypatch):
    old_sid = store.save_state("k1", _state(), {})

    def full_disk(path, obj, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "atomic_write_json", full_disk)
    with pytest.raises(StoreError, match="No space left on device"):
        store.save_state("k1", _state(), {})
    with pytest.raises(StoreError, match="No space left on device"):
        store.save_state("k2", _state(), {})
    with pytest.raises(StoreError, match="No space left on device"):
        store.save_evaluation(_record())
    monkeypatch.undo()
    assert store.load_state("k1")[1] == old_sid
    assert not store.state_path("k2").exists()
    assert sorted(p.name for p in store.states_dir.iterdir()) == ["k1"]
    assert not list(store.evaluations_dir.rglob("*.json"))
    assert not [p for p in store.evaluations_dir.rglob("*") if p.is_file()]  # no temp files left


def test_unwritable_store_is_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(StoreError, match="not writable"):
            ResultStore(ro / "store").check_writable()
    finally:
        ro.chmod(0o700)


def test_lock_serialises_holders_of_one_key(store):
    order: list[str] = []

    def worker(name: str) -> None:
        with store.lock("same"):
            order.append(f"{name}+")
            time.sleep(0.05)
            order.append(f"{name}-")

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])


def test_kill_hook_sigkills_after_n_writes(tmp_path):
    code = (
        "import sys; from genies.pipeline.store import ResultStore; from genies.records import EvaluationRecord\n"
        "s = ResultStore(sys.argv[1])\n"
        "for i in range(5):\n"
        "    s.save_evaluation(EvaluationRecord(key=f'{i:02d}' * 16, intervention='x', eval_distribution='d', n=0))\n"
        "    print(i, flush=True)\n"
    )
    env = {**os.environ, store_mod.KILL_ENV: "2"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")], env=env, capture_output=True, text=True
    )
    assert proc.returncode == -9
    assert proc.stdout.split() == ["0"]  # killed right after the 2nd write, before printing 1
    assert len(list((tmp_path / "s" / "evaluations").rglob("*.json"))) == 2
