"""Build small synthetic upstream ``results/`` trees (same layout and key sets as the real one).

Numbers are random but seeded; the stored accuracy of a file is ``mean(p >= 0.5)`` of its own
probabilities (as upstream), and every expected table value is derived from what was written.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TRAINER_EXTRA = {
    "eval_loss": 0.69,
    "eval_runtime": 1.0,
    "eval_samples_per_second": 1.0,
    "eval_steps_per_second": 1.0,
}


@dataclass
class Tree:
    root: Path  # the results/ folder
    files: dict[str, dict] = field(default_factory=dict)  # rel path → content written
    ttc: dict[tuple[str, str], dict] = field(default_factory=dict)  # (model, target) → content

    def stored(self, rel: str, key: str = "eval_accuracy") -> float:
        return self.files[rel][key]


def _write(tree: Tree, rel: str, doc: dict) -> None:
    path = tree.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    tree.files[rel] = doc


def evaluation_doc(rng: np.random.Generator, n: int = 40, *, with_rms: bool = True) -> dict:
    p = rng.random(n)
    p[: n // 8] = 0.5  # a few exact ties
    p = p.tolist()
    arr = np.asarray(p)
    doc = {
        "model_dir": "models/x",
        "distribution_id": "x",
        "timestamp": "2023-10-26 12:00:00",
        "eval_accuracy": float(np.mean(arr >= 0.5)),
        "eval_average_probability": float(np.mean(arr)),
        "eval_brier_score": float(np.mean((1 - arr) ** 2)),
        "eval_probabilities": p,
        "eval_score": -float(np.mean((1 - arr) ** 2)),
        **TRAINER_EXTRA,
    }
    if with_rms:
        doc["eval_rms_calibration_error"] = float(rng.random())
    return doc


def make_tree(
    root: Path,
    shifts: Sequence[tuple[str, str]],
    *,
    model: str = "llama-7b",
    interventions: Sequence[str] = ("mms",),
    seed: int = 0,
    junk: bool = True,
) -> Tree:
    """A results/ tree under ``root`` covering ``shifts`` for ``model`` and ``interventions``.

    Adds what the real tree has around the useful files when ``junk``: a png, a stale nested
    folder, a base-model evaluation, a ccs-style file without probabilities and a human_eval file
    with unprefixed keys.
    """
    rng = np.random.default_rng(seed)
    tree = Tree(root=root / "results")
    targets = {t for _, t in shifts}
    for iv in (*interventions, "zero_shot"):
        for source, target in shifts:
            for dist in (target, source):
                rel = f"evaluations/{iv}/{model}-{source}/{dist}.json"
                if rel not in tree.files:
                    _write(tree, rel, evaluation_doc(rng))
    for target in sorted(targets):
        doc = {
            "best_intervention": "classify_lora",
            "best_intervention_accuracy": float(np.round(rng.uniform(0.6, 1.0), 4)),
            "target_reference": target,
            "target": target,
        }
        path = tree.root / "target_tuned_capability" / model / f"{target}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
        tree.ttc[(model, target)] = doc
    if junk:
        (tree.root / "evaluations" / "zero_shot" / "plot.png").write_bytes(b"\x89PNG")
        _write(tree, f"evaluations/{interventions[0]}/old_evals/{model}-a/a.json", evaluation_doc(rng))
        _write(tree, f"evaluations/zero_shot/{model}/{shifts[0][1]}.json", evaluation_doc(rng))
        _write(
            tree,
            f"evaluations/ccs/{model}-{shifts[0][0]}/{shifts[0][1]}.json",
            {
                "model_dir": "m",
                "distribution_dir": "d",
                "timestamp": "t",
                "eval_accuracy": 0.61,
                "eval_score": 0.61,
            },
        )
        human = evaluation_doc(rng, 10)
        _write(
            tree,
            "evaluations/human_eval/human/code.json",
            {
                "model_name": "human",
                "distribution_id": "code",
                "timestamp": "t",
                "score": -human["eval_brier_score"],
                "brier_score": human["eval_brier_score"],
                "average_probability": human["eval_average_probability"],
                "accuracy": human["eval_accuracy"],
                "probabilities": human["eval_probabilities"],
                "eval_score": -human["eval_brier_score"],
            },
        )
    return tree


def make_tarball(tree: Tree, path: Path, *, top: str | None = None) -> Path:
    """Pack ``tree.root`` as ``results/...`` (or ``<top>/results/...``)."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree.root, arcname=f"{top}/results" if top else "results")
    return path
