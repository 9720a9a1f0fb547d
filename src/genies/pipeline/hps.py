"""Hyperparameter search for one intervention on one distribution (``genies sweep``).

Upstream §3.9 item 11: the search runs on an *hps split* of the source's train split — the first 400
examples train, the next 200 are held out — so the test split is never looked at. Each trial fits
the intervention on the hps-train part and scores the held-out part; the objective is a metric of
that evaluation (accuracy by default, maximised; upstream minimised the eval loss).

Trials are cached in the result store (``<store>/sweeps/trials/<key>.json``, keyed by the
intervention, its config without result-neutral keys, the model identity, the data fingerprints, the
hps sizes and the seed); a sweep's summary is ``<store>/sweeps/<sweep key>.json``. Writes are atomic,
so an interrupted sweep resumes trial by trial. Search: the full grid (``key=v1,v2,…``), or optuna's
seeded TPE sampler over ``key=v1,v2`` (categorical) and ``key=lo:hi`` (log-uniform for floats,
uniform for ints) for ``trials`` trials (``pip install 'genies[hps]'``).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genies.errors import ConfigError, GeniesError
from genies.hashing import content_hash
from genies.io import atomic_write_json

ALIASES = {"lr": "learning_rate", "steps": "num_train_steps", "bs": "batch_size"}
MINIMISE = {"brier_score", "rms_calibration_error", "ece", "rms_calibration_error_upstream"}


@dataclass
class Trial:
    config: dict[str, Any]
    metrics: dict[str, float]
    objective: float
    key: str
    fit_s: float = 0.0
    cached: bool = False


@dataclass
class SweepResult:
    key: str
    intervention: str
    distribution: str
    objective: str
    trials: list[Trial] = field(default_factory=list)
    path: Path | None = None

    @property
    def best(self) -> Trial:
        finite = [t for t in self.trials if math.isfinite(t.objective)]
        if not finite:
            raise GeniesError("no trial gave a finite objective")
        pick = min if self.objective in MINIMISE else max
        return pick(finite, key=lambda t: t.objective)


def _value(text: str) -> Any:
    from genies.pipeline.config import parse_value

    return parse_value(text.strip())


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any] | tuple[Any, Any]]:
    """``["lr=1e-5,7e-5", "r=8:64"]`` → ``{"learning_rate": [1e-5, 7e-5], "r": (8, 64)}`` (a tuple is a
    range, for optuna). ``lr``, ``steps`` and ``bs`` are aliases."""
    out: dict[str, list[Any] | tuple[Any, Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key or not values.strip():
            raise ConfigError(f"bad --grid {spec!r}: expected KEY=V1,V2,… or KEY=LO:HI")
        if ":" in values and "," not in values:
            lo, hi = (_value(v) for v in values.split(":", 1))
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (lo, hi)) or lo >= hi:
                raise ConfigError(f"bad --grid range {spec!r}: need numbers LO < HI")
            out[key] = (lo, hi)
        else:
            out[key] = [_value(v) for v in values.split(",") if v.strip()]
    if not out:
        raise ConfigError("give at least one --grid KEY=VALUES")
    return out


def hps_splits(dist: Any, n_train: int = 400, n_val: int = 200) -> tuple[Any, Any]:
    """The hps split of a distribution's train split: its first ``n_train`` examples and the next
    ``n_val`` (upstream: 400 / 200 of alpaca_mmlu's 600)."""
    from genies.data.schema import Split

    train = dist.split("train")
    exs = list(train.examples)
    if len(exs) < n_train + 1:
        raise ConfigError(
            f"{dist.id}'s train split has {len(exs)} examples: too few for an hps split of {n_train} + {n_val}"
        )
    fit = Split(name="hps_train", examples=exs[:n_train], distribution_id=dist.id)
    val = Split(name="hps_val", examples=exs[n_train : n_train + n_val], distribution_id=dist.id)
    return fit, val


def _fits(ctx: Any, split: Any, rules: Sequence[Any]) -> Any:
    """Drop examples breaking a ``scoring`` length rule (whole examples, as the pipeline does)."""
    from genies.data.schema import Split

    if not any(r.kind == "scoring" for r in rules):
        return split
    eng = ctx.engine
    keep = [e for e in split.examples if all(eng.fits(e.prompt, t) for t in e.texts)]
    return Split(name=split.name, examples=keep, distribution_id=split.distribution_id)


def run_sweep(
    intervention: str,
    distribution: str,
    grid: Mapping[str, Any],
    *,
    model: str,
    store: Path,
    data_dir: Path | None = None,
    base_config: Mapping[str, Any] | None = None,
    device: str = "auto",
    seed: int = 0,
    search: Literal["grid", "optuna"] = "grid",
    trials: int | None = None,
    objective: str = "accuracy",
    n_train: int = 400,
    n_val: int = 200,
    log: Callable[[str], None] = lambda m: None,
    progress: Any = None,
) -> SweepResult:
    """Run the search; every trial is cached in ``store``; returns all trials (best: ``.best``)."""
    from genies.api.context import InterventionContext, ModelSession
    from genies.data.loading import load_distribution
    from genies.interventions.registry import get_intervention
    from genies.metrics import summarize
    from genies.models.loading import model_identity

    iv = get_intervention(intervention)
    base = dict(base_config or {})
    iv.make_config(base)  # fail early on a bad base config
    for k in grid:
        if k not in iv.Config.model_fields:
            raise ConfigError(
                f"{intervention} has no config key {k!r} (keys: {', '.join(sorted(iv.Config.model_fields))})"
            )
    if search == "grid" and any(isinstance(v, tuple) for v in grid.values()):
        raise ConfigError("ranges (KEY=LO:HI) need --search optuna")
    dist = load_distribution(distribution, data_dir)
    fit_split, val_split = hps_splits(dist, n_train, n_val)
    ident = model_identity(model)
    session = ModelSession(model, device=device, expect_sha256=ident.get("weights_sha256"), log=log)
    root = Path(store) / "sweeps"
    sweep_key = content_hash(
        {"i": intervention, "d": distribution, "g": {k: list(v) if isinstance(v, tuple) else v for k, v in grid.items()},
         "b": base, "m": ident, "s": seed, "search": search, "n": trials, "o": objective, "hps": [n_train, n_val]},
        32,
    )  # fmt: skip
    result = SweepResult(sweep_key, intervention, distribution, objective)

    def trial(point: Mapping[str, Any]) -> Trial:
        cfg = iv.make_config({**base, **point})
        key = content_hash(
            {"i": intervention, "c": iv.key_config(cfg), "m": ident, "d": [fit_split.fingerprint, val_split.fingerprint],
             "s": seed, "o": "hps-trial"},
            32,
        )  # fmt: skip
        path = root / "trials" / f"{key}.json"
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                t = Trial(
                    doc["config"], doc["metrics"], float(doc["metrics"][objective]), key, doc["fit_s"], True
                )
                log(f"trial {dict(point)}: {objective} {t.objective:.4f} (cached)")
                return t
            except (OSError, ValueError, KeyError):
                log(f"warning: unreadable trial {path}; recomputing it")
        ctx = InterventionContext(
            seed=seed, session=session, checkpoint_dir=root / "checkpoints" / key, log=log, progress=progress,
            activations_root=Path(store) / "activations",
        )  # fmt: skip
        reqs = iv.requirements(cfg)
        train = _fits(ctx, fit_split, reqs.train_lengths) if reqs.fit_model else fit_split
        val = _fits(ctx, val_split, reqs.lengths)
        t0 = time.perf_counter()
        state = iv.fit(ctx, train, cfg)
        fit_s = time.perf_counter() - t0
        pairs = val.to_pairs("all", seed=seed)
        scored = iv.score_pairs(ctx, state, pairs, cfg)
        metrics = {k: float(v) for k, v in summarize(scored.p_correct).items()}
        doc = {"config": cfg.model_dump(mode="json"), "metrics": metrics, "fit_s": round(fit_s, 3),
               "pairs": len(pairs), "train_examples": len(train), "intervention": intervention,
               "distribution": distribution, "model": ident, "seed": seed}  # fmt: skip
        atomic_write_json(path, doc)
        ctx.close()
        import shutil

        shutil.rmtree(root / "checkpoints" / key, ignore_errors=True)
        t = Trial(doc["config"], metrics, metrics[objective], key, fit_s)
        log(
            f"trial {dict(point)}: {objective} {t.objective:.4f} ({len(pairs)} held-out pairs, fit {fit_s:.1f}s)"
        )
        return t

    if search == "grid":
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            result.trials.append(trial(dict(zip(keys, values, strict=True))))
    else:
        result.trials.extend(_optuna(grid, trials or 8, seed, objective, trial))
    result.path = root / f"{sweep_key}.json"
    best = result.best
    atomic_write_json(
        result.path,
        {"key": sweep_key, "intervention": intervention, "distribution": distribution, "objective": objective,
         "search": search, "hps": {"train": n_train, "val": n_val}, "model": ident, "seed": seed,
         "trials": [{"config": t.config, "metrics": t.metrics, "key": t.key} for t in result.trials],
         "best": {"config": best.config, "objective": best.objective}},
    )  # fmt: skip
    return result


def _optuna(
    grid: Mapping[str, Any], n: int, seed: int, objective: str, trial: Callable[..., Trial]
) -> list[Trial]:
    try:
        import optuna
    except ImportError:
        raise ConfigError("--search optuna needs optuna: pip install 'genies[hps]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize" if objective in MINIMISE else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    done: list[Trial] = []

    def run(t: Any) -> float:
        point: dict[str, Any] = {}
        for k, v in grid.items():
            if isinstance(v, tuple):
                lo, hi = v
                if isinstance(lo, int) and isinstance(hi, int):
                    point[k] = t.suggest_int(k, lo, hi)
                else:
                    point[k] = t.suggest_float(k, float(lo), float(hi), log=lo > 0)
            else:
                point[k] = t.suggest_categorical(k, list(v))
        res = trial(point)
        done.append(res)
        return res.objective if math.isfinite(res.objective) else float("nan")

    study.optimize(run, n_trials=n)
    return done
