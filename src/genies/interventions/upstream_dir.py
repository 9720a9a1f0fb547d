"""``upstream_dir``: run an upstream-style intervention directory (``train.py`` + ``eval.py``).

``genies run --intervention path/to/dir`` resolves here (cli/run.py): the directory's path and the
sha256 of its files go into the config, so results are cached by the directory's *contents* (the path
itself is result-neutral) and a directory changed after planning is refused.

The scripts run as subprocesses (``sys.executable``, cwd = the directory) with upstream's argument
contract (upstream-reference §3.1; values formatted with ``str()``, lists as ``"['a', 'b']"``):

* ``train.py --model_dir BASE --output_dir OUT --training_distribution_dir D
  --test_distribution_dirs "['D']" [--k v for train_kwargs]``
* ``eval.py --model_dir OUT --distribution_dirs "['E']" --output_paths "['E.json']" [--k v for eval_kwargs]``

``D`` holds the (limited, length-filtered) training split as ``train.json``; ``E`` holds the evaluated
pairs, one two-response example per pair in order (correct response first, score 1), as
``test.json``, so the script's own pairing yields exactly the planned pairs. The JSON a script writes
must hold ``eval_accuracy``; genies stores an evaluation only from per-pair ``eval_probabilities``
(a list of p(correct), or of ``[p_first, p_second]`` rows, first = correct): a script that reports
only aggregate numbers gets a clear error, never imputed probabilities. What it reports
(``eval_accuracy``, ``eval_rms_calibration_error``) is kept as-is in the record's ``info.reported``.
A script that exits non-zero is reported with the tail of its stderr. The trained output folder is
stored in the state as one uint8 tensor per file (safetensors; no pickle).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pydantic

from genies.api.intervention import (
    Intervention,
    InterventionConfig,
    InterventionState,
    LengthRule,
    Requirements,
    ScoredPairs,
    scored_pairs,
)
from genies.errors import ConfigError, GeniesError, StoreError
from genies.hashing import sha256_file, sha256_text
from genies.interventions.registry import register_intervention

if TYPE_CHECKING:
    from genies.api.context import InterventionContext
    from genies.data.schema import Pair, Split

SCRIPTS = ("train.py", "eval.py")


class UpstreamDirConfig(InterventionConfig):
    path: str = pydantic.Field(..., description="The directory with train.py and eval.py (result-neutral).")
    dir_sha256: str = pydantic.Field(..., description="sha256 of the directory's files (the cache key).")
    train_kwargs: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Extra --k v for train.py."
    )
    eval_kwargs: dict[str, Any] = pydantic.Field(default_factory=dict, description="Extra --k v for eval.py.")
    timeout_s: int | None = pydantic.Field(None, ge=1, description="Per-script time limit (result-neutral).")


def is_upstream_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and all((p / s).is_file() for s in SCRIPTS)


def dir_sha256(path: str | Path) -> str:
    """One sha256 over the directory's files (relative names + contents), ignoring caches."""
    root = Path(path)
    lines = []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if f.is_file() and "__pycache__" not in rel and not rel.endswith(".pyc"):
            lines.append(f"{rel}\0{sha256_file(f)}\n")
    return sha256_text("".join(lines))


def upstream_config_values(path: str | Path) -> dict[str, str]:
    """The config values ``genies run --intervention DIR`` adds for ``upstream_dir``."""
    if not is_upstream_dir(path):
        raise ConfigError(
            f"{path} is not an upstream-style intervention directory (needs train.py and eval.py)"
        )
    return {"path": str(Path(path).resolve()), "dir_sha256": dir_sha256(path)}


def _args(values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in values.items():
        out += [f"--{k}", str(v)]  # upstream: str() of every value, lists as "['a', 'b']"
    return out


def _write_split(folder: Path, name: str, records: list[dict[str, Any]], dist_id: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    other = "test" if name == "train" else "train"
    if not (folder / f"{other}.json").exists():
        (folder / f"{other}.json").write_text("[]", encoding="utf-8")
    (folder / "metadata.json").write_text(json.dumps({"id": dist_id}), encoding="utf-8")


def _run(script: Path, args: list[str], timeout: int | None) -> None:
    try:
        done = subprocess.run(
            [sys.executable, script.name, *args],
            cwd=script.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise GeniesError(f"{script} ran past its time limit of {timeout}s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or "").strip().splitlines()[-8:]) or "(no stderr)"
        raise GeniesError(f"{script} exited with status {done.returncode}: {tail}")


@register_intervention("upstream_dir")
class UpstreamDir(Intervention):
    """An upstream-style directory run through subprocesses (see the module docstring)."""

    Config: ClassVar[type[InterventionConfig]] = UpstreamDirConfig

    def requirements(self, config: InterventionConfig) -> Requirements:
        return Requirements(
            train_data=True, fit_model=True, score_model=False,
            result_neutral=frozenset({"path", "timeout_s"}), lengths=(LengthRule("scoring"),),
            train_lengths=(LengthRule("scoring"),),
        )  # fmt: skip

    def _check_dir(self, cfg: UpstreamDirConfig) -> Path:
        path = Path(cfg.path)
        if not is_upstream_dir(path):
            raise GeniesError(f"upstream intervention directory {path} is gone or lacks train.py/eval.py")
        if dir_sha256(path) != cfg.dir_sha256:
            raise GeniesError(f"{path} changed since this run was planned; rerun the command")
        return path

    def fit(self, ctx: InterventionContext, train: Split, config: InterventionConfig) -> InterventionState:
        import torch

        cfg = self.check_config(config)
        path = self._check_dir(cfg)
        model_dir = self._model_dir(ctx)
        with tempfile.TemporaryDirectory(prefix="genies-upstream-") as tmp:
            dist = Path(tmp) / (train.distribution_id or "train")
            records = [{"prompt": e.prompt, "responses": dict(e.responses)} for e in train.examples]
            _write_split(dist, "train", records, train.distribution_id)
            out = Path(tmp) / "output"
            out.mkdir()
            args = {
                "model_dir": model_dir, "output_dir": str(out), "training_distribution_dir": str(dist),
                "test_distribution_dirs": [str(dist)], **cfg.train_kwargs,
            }  # fmt: skip
            ctx.log(f"running {path / 'train.py'}")
            _run(path / "train.py", _args(args), cfg.timeout_s)
            files = sorted(p for p in out.rglob("*") if p.is_file())
            tensors = {
                f"file:{p.relative_to(out).as_posix()}": torch.frombuffer(bytearray(p.read_bytes()) or bytearray(1), dtype=torch.uint8)
                for p in files
            }  # fmt: skip
            sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in files}
        meta = {"intervention": self.name, "dir_sha256": cfg.dir_sha256, "files": sizes,
                "train_distribution": train.distribution_id or None}  # fmt: skip
        return InterventionState(meta=meta, tensors=tensors)

    @staticmethod
    def _model_dir(ctx: InterventionContext) -> str:
        # the base model's local folder (what upstream passes as --model_dir)
        return str(ctx.model.info.get("path") or ctx.model.name)

    def score_pairs(
        self,
        ctx: InterventionContext,
        state: InterventionState,
        pairs: Sequence[Pair],
        config: InterventionConfig,
    ) -> ScoredPairs:
        cfg = self.check_config(config)
        if state.meta.get("intervention") != self.name or state.meta.get("dir_sha256") != cfg.dir_sha256:
            raise StoreError("not a state of this upstream directory")
        path = self._check_dir(cfg)
        if not pairs:
            return scored_pairs(pairs, [])
        with tempfile.TemporaryDirectory(prefix="genies-upstream-") as tmp:
            out = Path(tmp) / "model"
            out.mkdir()
            for rel, size in state.meta["files"].items():
                data = state.tensors[f"file:{rel}"].numpy().tobytes()[:size]
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                (out / rel).write_bytes(data)
            records = []
            for p in pairs:
                if p.correct == p.incorrect:
                    raise GeniesError(
                        f"pair {p.id} has two identical responses; an upstream script cannot tell them apart"
                    )
                records.append({"prompt": p.prompt, "responses": {p.correct: 1.0, p.incorrect: 0.0}})
            dist = Path(tmp) / "eval"
            _write_split(dist, "test", records, "eval")
            result = Path(tmp) / "eval.json"
            args = {"model_dir": str(out), "distribution_dirs": [str(dist)], "output_paths": [str(result)],
                    **cfg.eval_kwargs}  # fmt: skip
            _run(path / "eval.py", _args(args), cfg.timeout_s)
            try:
                doc = json.loads(result.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise GeniesError(
                    f"{path / 'eval.py'} wrote no readable JSON to its output path: {exc}"
                ) from None
        return scored_pairs(pairs, _probabilities(doc, len(pairs), path), reported=_reported(doc))


def _reported(doc: dict[str, Any]) -> dict[str, Any]:
    keys = ("eval_accuracy", "eval_rms_calibration_error")
    return {k: doc[k] for k in keys if k in doc}


def _probabilities(doc: Any, n: int, path: Path) -> np.ndarray:
    if not isinstance(doc, dict) or "eval_accuracy" not in doc:
        raise GeniesError(f"{path / 'eval.py'} did not report eval_accuracy")
    probs = doc.get("eval_probabilities")
    if probs is None:
        raise GeniesError(
            f"{path / 'eval.py'} reported only aggregate metrics (eval_accuracy={doc['eval_accuracy']}); genies "
            "stores per-pair results, so eval.py must also write eval_probabilities (nothing is imputed)"
        )
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 0] / arr.sum(axis=1)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)) or np.any((arr < 0) | (arr > 1)):
        raise GeniesError(
            f"{path / 'eval.py'} wrote eval_probabilities of shape {arr.shape}; expected {n} values in [0, 1]"
        )
    return arr
