"""ctx services inside the pipeline: activations nodes and the activation cache (through a test double
that follows seams.md §3), and checkpoint directories (under the node's lock, kept across an
interruption, removed on completion)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from pipeline_helpers import CheckpointIntervention

from genies.errors import InterruptedRun
from genies.pipeline.suite import run_suite


class FakeActivationCache:
    """seams.md §3: ``ActivationCache(root, model_key)``, ``get(engine, texts, sites, template)``,
    ``missing(texts, sites, template)``, ``stats``. Values are a fixed function of the rendered text,
    kept per (root, model key) as the real cache keeps them on disk."""

    data: dict[tuple[str, str], dict[tuple[str, str], torch.Tensor]] = {}
    engine_calls: list[int] = []

    def __init__(self, root: Path, model_key: str, *, dtype: str = "float32") -> None:
        self.entries = self.data.setdefault((str(root), model_key), {})
        self.stats = {"texts_cached": 0, "texts_computed": 0, "forward_tokens": 0}

    @staticmethod
    def _text(text, template):
        from genies.lengths import render_template

        return render_template(template, *text) if isinstance(text, tuple) else text

    def missing(self, texts, sites, template=None):
        return [
            i
            for i, t in enumerate(texts)
            if any((self._text(t, template), s) not in self.entries for s in sites)
        ]

    def get(self, engine, texts, sites, template=None):
        todo = self.missing(texts, sites, template)
        if todo:
            engine()  # the model is needed (and loaded) only for texts not cached yet
            self.engine_calls.append(len(todo))
            for i in todo:
                rendered = self._text(texts[i], template)
                seed = int(hashlib.sha256(rendered.encode()).hexdigest()[:8], 16)
                value = torch.randn(3, 4, generator=torch.Generator().manual_seed(seed))
                for s in sites:
                    self.entries[(rendered, s)] = value
        self.stats["texts_computed"] += len(todo)
        self.stats["texts_cached"] += len(texts) - len(todo)
        return {s: torch.stack([self.entries[(self._text(t, template), s)] for t in texts]) for s in sites}


@pytest.fixture
def fake_cache(monkeypatch):
    module = types.ModuleType("genies.models.activation_cache")
    module.ActivationCache = FakeActivationCache
    monkeypatch.setitem(sys.modules, "genies.models.activation_cache", module)
    FakeActivationCache.data.clear()
    FakeActivationCache.engine_calls.clear()
    return FakeActivationCache


def test_activations_nodes_fill_the_cache_that_fit_and_scoring_read(toy, counter, tiny_model_dir, fake_cache):
    opts = toy.options(
        intervention="test_acts", baseline_intervention="test_length", model=str(tiny_model_dir), device="cpu"
    )
    first = run_suite(opts)
    graph = first.prepared.plan.graph
    acts = graph.of_kind("activations")
    # fit: toy_d (TTC reference), toy_b, toy_a, toy_e training splits; scoring: every evaluated split
    assert {(n.inputs["data"]["distribution"], n.inputs["data"]["split"]) for n in acts} >= {
        ("toy_a", "train"),
        ("toy_e", "train"),
        ("toy_b", "test"),
        ("toy_a", "test"),
    }
    for n in graph.of_kind("state"):
        if n.inputs["intervention"] == "test_acts":
            assert [graph[d].kind for d in n.deps] == ["activations"]
    for n in graph.of_kind("evaluation"):
        if n.inputs["state"]["intervention"] == "test_acts":
            assert graph[n.deps[0]].kind == "state" and graph[n.deps[1]].kind == "activations"
            assert n.resources["model"] is False  # scoring reads the cache only
    assert first.counters.activations_computed == len(acts)
    calls = len(fake_cache.engine_calls)
    assert calls == len(acts)  # every text was embedded by its activations node, not by fit or scoring
    assert (first.prepared.store.root / "activations").name == "activations"

    again = run_suite(opts)
    c = again.counters
    assert (c.evaluations_computed, c.activations_computed, c.model_loads) == (0, 0, 0)
    assert len(fake_cache.engine_calls) == calls

    # an evaluation lost: its state and activations are found complete and reused, nothing is embedded
    # again and (the intervention scores from the cache) no model is loaded
    key = next(n.key for n in graph.of_kind("evaluation") if n.inputs["state"]["intervention"] == "test_acts")
    first.prepared.store.evaluation_path(key).unlink()
    third = run_suite(opts)
    assert third.counters.evaluations_computed == 1 and third.counters.activations_reused >= 1
    assert third.counters.model_loads == 0 and len(fake_cache.engine_calls) == calls
    assert third.csv_path.read_bytes() == first.csv_path.read_bytes()


def test_checkpoint_dir_survives_an_interruption_and_is_removed_on_completion(toy, counter, tmp_path):
    CheckpointIntervention.observed.clear()
    with pytest.raises(InterruptedRun):
        toy.run(intervention="test_ckpt", baseline_intervention="test_length")
    (first,) = CheckpointIntervention.observed
    ckpt = Path(first["dir"])
    assert not first["resumed"] and (ckpt / "progress.json").is_file()
    assert ckpt.parent == toy.store / "checkpoints"
    resumed = toy.run(intervention="test_ckpt", baseline_intervention="test_length")
    assert CheckpointIntervention.observed[1] == {"dir": str(ckpt), "resumed": True}
    assert not ckpt.exists()  # removed once the node completed
    store = resumed.prepared.store
    states = [
        store.load_state(k)
        for k, n in resumed.prepared.plan.states.items()
        if n.inputs["intervention"] == "test_ckpt"
    ]
    assert states[0].state.meta["resumed_at"] == 1


def test_checkpoint_dir_is_used_under_the_nodes_lock(toy, counter, monkeypatch):
    """While fit runs, the node's key is locked: another process cannot take it."""
    from genies.pipeline.store import ResultStore

    held: list[int] = []
    real_fit = CheckpointIntervention.fit

    def fit(self, ctx, train, config):
        lock = Path(ctx.checkpoint_dir).parent.parent / "locks" / f"{Path(ctx.checkpoint_dir).name}.lock"
        code = "import sys; from filelock import FileLock, Timeout\ntry:\n FileLock(sys.argv[1]).acquire(timeout=0)\nexcept Timeout:\n sys.exit(3)"
        held.append(subprocess.run([sys.executable, "-c", code, str(lock)]).returncode)
        return real_fit(self, ctx, train, config)

    monkeypatch.setattr(CheckpointIntervention, "fit", fit)
    toy.run(
        intervention="test_ckpt",
        baseline_intervention="test_length",
        sets=["intervention.interrupt_first=false"],
    )
    assert held and set(held) == {3}
    assert not (ResultStore(toy.store).checkpoints_dir).exists() or not any(
        ResultStore(toy.store).checkpoints_dir.iterdir()
    )
