"""Upstream-style eval.py: score each pair by the learnt length rule; one JSON per distribution."""

import argparse
import ast
import json
import math
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--model_dir", required=True)
ap.add_argument("--distribution_dirs", type=ast.literal_eval, required=True)
ap.add_argument("--output_paths", type=ast.literal_eval, required=True)
args = ap.parse_args()
w = json.loads((Path(args.model_dir) / "config.json").read_text())["w"]
for dist, out in zip(args.distribution_dirs, args.output_paths):
    probs, correct = [], 0.0
    for ex in json.loads((Path(dist) / "test.json").read_text(encoding="utf-8")):
        best = max(ex["responses"], key=ex["responses"].get)
        for text, score in ex["responses"].items():
            if text == best:
                continue
            sign = (len(best) > len(text)) - (len(best) < len(text))
            p = 1 / (1 + math.exp(-w * sign))
            probs.append(p)
            correct += 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0
    acc = correct / max(len(probs), 1)
    rms = math.sqrt(sum((max(p, 1 - p) - (p > 0.5)) ** 2 for p in probs) / max(len(probs), 1))
    Path(out).write_text(
        json.dumps({"eval_accuracy": acc, "eval_probabilities": probs, "eval_rms_calibration_error": rms})
    )
