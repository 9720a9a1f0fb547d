"""Pipeline test helpers: toy distributions on disk and two cheap test-only interventions.

``test_length`` scores a pair by the length difference of its responses (no model, no training data:
its requirements say ``train_data=False, fit_model=False``). ``test_bias`` "trains": it learns the mean
length difference of the training pairs as a tensor, so its states have safetensors files and depend on
the train split.
Both call the fake model once per ``score_pairs`` so forward passes can be counted, and both count
their calls so tests can see exactly what was computed.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    Requirements,
    ScoredPairs,
)
from genies.interventions.registry import register_intervention
from genies.pipeline.suite import RunOptions, RunOutcome, run_suite

TOY_IDS = ("toy_a", "toy_b", "toy_c", "toy_d", "toy_e")
TOY_SUITE = [
    {"source": "toy_a", "target": "toy_b", "category": "skill"},
    {"source": "toy_a", "target": "toy_c", "target_reference": "toy_d", "category": "skill"},
    {"source": "toy_e", "target": "toy_b", "category": "context"},
]


class Counter:
    calls: ClassVar[int] = 0
    fits: ClassVar[int] = 0
    interrupt_after: ClassVar[int | None] = None  # raise KeyboardInterrupt on the call after this many

    @classmethod
    def reset(cls) -> None:
        cls.calls = cls.fits = 0
        cls.interrupt_after = None

    @classmethod
    def tick(cls, model: Any) -> None:
        if cls.interrupt_after is not None and cls.calls >= cls.interrupt_after:
            raise KeyboardInterrupt
        cls.calls += 1
        import torch

        m = model.model  # one "forward pass", seen by the runner's hook (fake Linear or a real LM)
        m(torch.zeros(1, 1, dtype=torch.long) if hasattr(m, "get_input_embeddings") else torch.zeros(1, 1))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class LengthConfig(InterventionConfig):
    scale: float = 1.0
    batch_size: int | None = None  # never changes results (result-neutral)


@register_intervention("test_length")
class LengthIntervention(Intervention):
    Config = LengthConfig

    def requirements(self, config):
        return Requirements(train_data=False, fit_model=False, result_neutral=frozenset({"batch_size"}))

    def fit(self, ctx, train, config):
        Counter.fits += 1
        return InterventionState(meta={"intervention": self.name})

    def score_pairs(self, ctx, state, pairs: Sequence, config):
        Counter.tick(ctx.model)
        p = [sigmoid(config.scale * (len(pr.correct) - len(pr.incorrect)) / 7.0) for pr in pairs]
        return ScoredPairs([pr.id for pr in pairs], np.array(p), info={"calls": 1})


class BiasConfig(InterventionConfig):
    weight: float = 1.0


@register_intervention("test_bias")
class BiasIntervention(Intervention):
    Config = BiasConfig  # default requirements: fit reads the train split and the model

    def fit(self, ctx, train, config):
        import torch

        Counter.fits += 1
        assert ctx.model is not None, "a training intervention gets the model"
        pairs = train.to_pairs("one_per_example", seed=ctx.seed)
        bias = float(np.mean([len(p.correct) - len(p.incorrect) for p in pairs])) if pairs else 0.0
        return InterventionState(
            meta={"intervention": "test_bias", "n": len(pairs)}, tensors={"bias": torch.tensor([bias])}
        )

    def score_pairs(self, ctx, state, pairs: Sequence, config):
        Counter.tick(ctx.model)
        bias = float(state.tensors["bias"][0])
        p = [sigmoid(config.weight * (len(pr.correct) - len(pr.incorrect) - bias) / 5.0) for pr in pairs]
        return ScoredPairs([pr.id for pr in pairs], np.array(p))


def _toy_records(dist_id: str, split: str, n: int) -> list[dict]:
    rng = np.random.default_rng([TOY_IDS.index(dist_id), 0 if split == "train" else 1])
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    out = []
    for i in range(n):
        k = 2 + int(rng.integers(0, 2))
        texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 9)))) + f" #{j}" for j in range(k)]
        best = int(rng.integers(0, k))
        out.append(
            {
                "prompt": f"{dist_id} {split} question {i}?",
                "responses": {t: int(j == best) for j, t in enumerate(texts)},
            }
        )
    return out


def write_toy_data(data_dir: Path) -> Path:
    for d in TOY_IDS:
        folder = data_dir / "distributions" / d
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text(json.dumps(_toy_records(d, "train", 10)))
        (folder / "test.json").write_text(json.dumps(_toy_records(d, "test", 8)))
    return data_dir


@dataclass
class ToyEnv:
    root: Path
    data_dir: Path
    suite: Path
    store: Path
    out: Path
    loads: list[int] = field(default_factory=list)

    def model_loader(self):
        import torch

        self.loads.append(1)
        return types.SimpleNamespace(
            model=torch.nn.Linear(1, 1), identity={"name": "fake"}, device="cpu", dtype="float32"
        )

    def options(self, **kw: Any) -> RunOptions:
        base: dict[str, Any] = {
            "intervention": "test_length",
            "suite": str(self.suite),
            "model": "fake",
            "store": self.store,
            "out": self.out,
            "data_dir": self.data_dir,
            "baseline_intervention": "test_length",
            "progress": False,
        }
        base.update(kw)
        return RunOptions(**base)

    def run(self, warnings: list[str] | None = None, **kw: Any) -> RunOutcome:
        warn = (lambda m: warnings.append(m)) if warnings is not None else (lambda m: None)
        return run_suite(
            self.options(**kw),
            warn=warn,
            model_loader=self.model_loader,
            model_key={"name": "fake", "weights_sha256": "0" * 8},
        )


# ---------------------------------------------------------------- interventions for process tests
# They find their instructions in environment variables, which worker processes inherit.

FIT_LOG_ENV = "GENIES_TEST_FIT_LOG"  # a file: each fit appends one line (pid)
DIE_DIR_ENV = "GENIES_TEST_DIE_DIR"  # a folder: score_pairs SIGKILLs its process once per pair set
DIE_ALWAYS_ENV = "GENIES_TEST_DIE_ALWAYS"


class SleepyConfig(InterventionConfig):
    seconds: float = 1.0


@register_intervention("test_sleepy")
class SleepyIntervention(Intervention):
    """Fits slowly (so two processes fitting the same state overlap) and logs every fit."""

    Config = SleepyConfig

    def requirements(self, config):
        return Requirements(train_data=True, fit_model=False)

    def fit(self, ctx, train, config):
        import os
        import time

        log = os.environ.get(FIT_LOG_ENV)
        if log:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        time.sleep(config.seconds)
        return InterventionState(meta={"intervention": "test_sleepy", "n": len(train)})

    def score_pairs(self, ctx, state, pairs, config):
        p = [sigmoid((len(pr.correct) - len(pr.incorrect)) / 7.0) for pr in pairs]
        return ScoredPairs([pr.id for pr in pairs], np.array(p))


@register_intervention("test_die_once")
class DieOnceIntervention(LengthIntervention):
    """test_length, except that scoring kills its own process the first time it sees a pair set."""

    def score_pairs(self, ctx, state, pairs, config):
        import hashlib
        import os
        import signal

        folder = os.environ.get(DIE_DIR_ENV)
        if folder:
            marker = Path(folder) / hashlib.sha256(",".join(p.id for p in pairs).encode()).hexdigest()
            if os.environ.get(DIE_ALWAYS_ENV) or not marker.exists():
                marker.write_text("died")
                os.kill(os.getpid(), signal.SIGKILL)
        p = [sigmoid(config.scale * (len(pr.correct) - len(pr.incorrect)) / 7.0) for pr in pairs]
        return ScoredPairs([pr.id for pr in pairs], np.array(p))


# ---------------------------------------------------------------- interventions for ctx services


@register_intervention("test_acts")
class ActsIntervention(Intervention):
    """A probe on cached activations: fit averages the correct-minus-incorrect residuals of the
    training pairs, scoring projects the evaluated pairs' differences on that direction."""

    Config = BiasConfig

    def requirements(self, config):
        from genies.api.intervention import ActivationSpec

        spec = ActivationSpec(sites=("resid",), template="Q: {prompt}\nA: {response}")
        return Requirements(
            fit_model=False, score_model=False, fit_activations=(spec,), score_activations=(spec,)
        )

    def _diffs(self, ctx, pairs):
        from genies.api.intervention import pair_texts

        texts = pair_texts(pairs)
        acts = ctx.activations(texts, ("resid",), "Q: {prompt}\nA: {response}")["resid"]
        index = {t: i for i, t in enumerate(texts)}
        return [acts[index[(p.prompt, p.correct)]] - acts[index[(p.prompt, p.incorrect)]] for p in pairs]

    def fit(self, ctx, train, config):
        import torch

        diffs = self._diffs(ctx, train.to_pairs("one_per_example", seed=ctx.seed))
        direction = torch.stack(diffs).mean(0) if diffs else torch.zeros(1)
        return InterventionState(meta={"intervention": "test_acts"}, tensors={"direction": direction})

    def score_pairs(self, ctx, state, pairs, config):
        w = state.tensors["direction"]
        p = [sigmoid(float((d * w).sum())) for d in self._diffs(ctx, pairs)]
        return ScoredPairs([pr.id for pr in pairs], np.array(p))


class CkptConfig(InterventionConfig):
    interrupt_first: bool = True


@register_intervention("test_ckpt")
class CheckpointIntervention(Intervention):
    """A resumable "training": step 1 is saved in ctx.checkpoint_dir, then (in the first fit after
    ``observed`` was cleared) the run is interrupted; a rerun resumes from the checkpoint."""

    Config = CkptConfig
    observed: ClassVar[list[dict]] = []

    def requirements(self, config):
        return Requirements(fit_model=False)

    def fit(self, ctx, train, config):
        d = ctx.checkpoint_dir
        ckpt = d / "progress.json"
        seen = {"dir": str(d), "resumed": ckpt.exists()}
        CheckpointIntervention.observed.append(seen)
        if not ckpt.exists():
            ckpt.write_text(json.dumps({"step": 1}))
            if config.interrupt_first and len(CheckpointIntervention.observed) == 1:  # the run's first fit
                raise KeyboardInterrupt
        step = json.loads(ckpt.read_text())["step"]
        return InterventionState(
            meta={"intervention": "test_ckpt", "resumed_at": step if seen["resumed"] else 0}
        )

    def score_pairs(self, ctx, state, pairs, config):
        p = [sigmoid((len(pr.correct) - len(pr.incorrect)) / 7.0) for pr in pairs]
        return ScoredPairs([pr.id for pr in pairs], np.array(p))
