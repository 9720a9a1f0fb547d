"""Upstream-style train.py: learn whether the preferred response tends to be the longer one."""

import argparse
import ast
import json
import math
import sys
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--model_dir", required=True)
ap.add_argument("--output_dir", required=True)
ap.add_argument("--training_distribution_dir", required=True)
ap.add_argument("--test_distribution_dirs", type=ast.literal_eval, default=[])
ap.add_argument("--fail", type=ast.literal_eval, default=False)
args = ap.parse_args()
if args.fail:
    print("train.py: asked to fail", file=sys.stderr)
    sys.exit(3)
assert isinstance(args.test_distribution_dirs, list)
examples = json.loads((Path(args.training_distribution_dir) / "train.json").read_text(encoding="utf-8"))
longer = total = 0
for ex in examples:
    best = max(ex["responses"], key=ex["responses"].get)
    for text, score in ex["responses"].items():
        if text != best:
            total += 1
            longer += len(best) > len(text)
frac = (longer + 1) / (total + 2)  # Laplace-smoothed share of pairs where the longer response wins
out = Path(args.output_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "config.json").write_text(json.dumps({"model_dir": args.model_dir, "w": math.log(frac / (1 - frac))}))
