"""Peak memory of the seven representation methods' fit + score at SmolLM2's shapes, without a model.

Fills an ``ActivationCache`` with random float32 activations of SmolLM2-135M's shapes (30 layers,
9 query heads × 64, hidden 576) for the largest GENIES training split (1800 examples, one pair per
example: 3600 texts) under the four templates the methods read (raw, LAT stimulus 2, Yes, No), then
runs each method's ``fit`` and ``score_pairs`` (on the same 1800 pairs) through a minimal context
whose ``activations`` is the cache, each method in a fresh subprocess, and reports the peak RSS
(``ru_maxrss``) of that process, its RSS after the imports, and sha256 digests of the fitted state's
tensors and of p(correct) (so two runs — before / after a change — can be compared bit for bit).

    python bench/repr_memory.py                      # all seven, results in bench/results/
    python bench/repr_memory.py --methods mms,cra --pairs 600 --tag after

The activations are random, so accuracies are meaningless: this measures memory only. ccs runs
with ``num_epochs=100`` (memory does not depend on the number of epochs). The cache (2 GB for
1800 pairs in float32) lives in a temporary folder removed at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ("mms", "lat_stim_1", "lat_stim_2", "cra", "ccs", "lat_pca", "linear_probe")
L, H, D_HEAD, D = 30, 9, 64, 576  # SmolLM2-135M
MODEL_KEY = "bench-smollm2-shapes"
SHARD = 600  # texts per shard (a run writes one shard per activations node; several per split)


def make_split(n: int):
    from genies.data.schema import Example, Split

    examples = [
        Example(
            prompt=f"### Instruction:\nQuestion {i}: which answer is right?\n\n### Response:\n",
            responses=((f"answer {i} (good)", 1.0), (f"answer {i} (bad)", 0.0)),
            index=i,
        )
        for i in range(n)
    ]
    return Split("train", examples, "bench")


def templates() -> list[str | None]:
    from genies.interventions._representation import (
        LAT_STIM_2_TEMPLATE,
        NO_TEMPLATE,
        RAW_TEMPLATE,
        YES_TEMPLATE,
    )

    return [RAW_TEMPLATE, LAT_STIM_2_TEMPLATE, YES_TEMPLATE, NO_TEMPLATE]


def fill_cache(root: Path, n_pairs: int, seed: int = 0) -> int:
    """Random float32 activations for every text of ``n_pairs`` training pairs under each template."""
    import numpy as np
    import torch

    from genies.api.intervention import pair_texts
    from genies.models.activation_cache import ActivationCache, text_sha256
    from genies.models.templates import render_all

    cache = ActivationCache(root, MODEL_KEY)
    texts = pair_texts(make_split(n_pairs).to_pairs("one_per_example", seed=seed))
    rng = np.random.default_rng(seed)
    for template in templates():
        hashes = [text_sha256(t) for t in render_all(texts, template)]
        for start in range(0, len(hashes), SHARD):
            m = len(hashes[start : start + SHARD])
            acts = {
                "resid": torch.from_numpy(rng.standard_normal((m, L, D), dtype=np.float32)),
                "heads": torch.from_numpy(rng.standard_normal((m, L, H, D_HEAD), dtype=np.float32)),
                "final": torch.from_numpy(rng.standard_normal((m, D), dtype=np.float32)),
            }
            cache._write(template, hashes[start : start + SHARD], acts)  # noqa: SLF001 - no engine here
    return len(texts)


class CacheContext:
    """The part of ``InterventionContext`` the representation methods use, over an existing cache."""

    def __init__(self, root: Path, seed: int = 0) -> None:
        from genies.models.activation_cache import ActivationCache

        self.seed = seed
        self.cache = ActivationCache(root, MODEL_KEY)

    def _no_engine(self):
        raise RuntimeError("an activation is missing from the bench cache (no model here)")

    def activations(self, texts, sites, template=None):
        return self.cache.get(self._no_engine, list(texts), tuple(sites), template)

    def activation_reader(self, texts, site, template=None):
        return self.cache.reader(self._no_engine, list(texts), site, template)

    @contextlib.contextmanager
    def progress(self, total, description):
        yield lambda n=1: None

    def log(self, msg):
        pass


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(method: str, root: Path, n_pairs: int) -> dict:
    """Fit + score one method in this (fresh) process; peak RSS and digests."""
    import numpy as np

    import genies.interventions.registry  # noqa: F401 - registers the built-ins
    from genies.interventions.registry import get_intervention

    iv = get_intervention(method)
    cfg = iv.make_config({"num_epochs": 100} if method == "ccs" else {})
    split = make_split(n_pairs)
    ctx = CacheContext(root)
    import sklearn.linear_model  # noqa: F401 - imported before the baseline reading, as fit imports it
    import torch

    base_kb = _rss_kb()
    t0 = time.perf_counter()
    state = iv.fit(ctx, split, cfg)
    fit_s = time.perf_counter() - t0
    pairs = split.to_pairs("one_per_example", seed=ctx.seed)
    t0 = time.perf_counter()
    scored = iv.score_pairs(ctx, state, pairs, cfg)
    score_s = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    h = hashlib.sha256()
    for name in sorted(state.tensors):
        h.update(name.encode())
        h.update(state.tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    p = np.asarray(scored.p_correct, dtype=np.float64)
    return {
        "method": method,
        "pairs": n_pairs,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "rss_after_imports_mb": round(base_kb / 1024, 1),
        "fit_s": round(fit_s, 2),
        "score_s": round(score_s, 2),
        "state_sha256": h.hexdigest(),
        "p_correct_sha256": hashlib.sha256(p.tobytes()).hexdigest(),
        "meta": json.loads(json.dumps(state.meta, default=str)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1800)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tag", default="current", help="Name of this measurement (results file suffix).")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--cache", type=Path, default=None, help="Reuse (or create) the cache here.")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary cache.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.cache, args.pairs)))
        return
    methods = [m for m in args.methods.split(",") if m]
    root = args.cache or Path(tempfile.mkdtemp(prefix="genies-repr-memory-"))
    try:
        if not (root / MODEL_KEY).is_dir():
            t0 = time.perf_counter()
            n = fill_cache(root, args.pairs)
            print(f"filled the cache: {n} texts × 4 templates in {time.perf_counter() - t0:.0f} s ({root})")
        rows = []
        for m in methods:
            cmd = [sys.executable, __file__, "--child", m, "--cache", str(root), "--pairs", str(args.pairs)]
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                raise SystemExit(f"{m} failed")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{m:13s} peak RSS {row['peak_rss_mb']:7.1f} MB (after imports {row['rss_after_imports_mb']:.0f} MB)"
                f"  fit {row['fit_s']:.1f} s  score {row['score_s']:.1f} s  state {row['state_sha256'][:12]}"
                f"  p {row['p_correct_sha256'][:12]}",
                flush=True,
            )
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"repr_memory-{args.pairs}-{args.tag}.json"
        path.write_text(
            json.dumps({"pairs": args.pairs, "shapes": [L, H, D_HEAD, D], "rows": rows}, indent=1)
        )
        print(f"wrote {path}")
    finally:
        if args.cache is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
