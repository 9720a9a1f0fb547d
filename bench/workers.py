"""`genies run --workers N` against `--workers 1`: wall times and identical outputs.

Runs the same command twice, one after the other on this machine, each in a fresh store:

    python bench/workers.py --suite genies --limit 10 --workers 2 [--intervention zero_shot]

and prints (and writes to bench/results/workers-<suite>-<limit>.json) both wall times, the load
average before and after each run (the machine may be shared: a speed-up on a busy 2-core machine
measures the share of the CPU the workers get, not parallel efficiency), and whether the CSVs and the
JSONs (their `created` and `versions` stamps aside) are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(args: list[str], store: Path, out: Path, workers: int) -> dict:
    main = "import sys; from genies.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", main, "run", *args, "--store", str(store), "--out", str(out),
           "--no-progress", "--workers", str(workers)]  # fmt: skip
    before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"workers={workers} failed:\n{proc.stderr[-2000:]}")
    found = re.search(r"evaluations: \d+ computed.*?model loads: \d+", " ".join(proc.stderr.split()))
    return {"workers": workers, "wall_s": round(wall, 1), "load_before": before, "load_after": os.getloadavg(),
            "counters": found.group(0) if found else ""}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="genies")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--intervention", default="zero_shot")
    ap.add_argument("--model", default="smollm2-135m")
    a = ap.parse_args()
    args = ["-i", a.intervention, "--suite", a.suite, "--limit", str(a.limit), "--model", a.model]
    with tempfile.TemporaryDirectory(prefix="genies-bench-workers-") as tmp:
        root = Path(tmp)
        runs = [_run(args, root / f"store{w}", root / f"out{w}", w) for w in (1, a.workers)]
        stem = Path(a.suite).stem if a.suite.endswith(".json") else a.suite
        csv = [(root / f"out{w}" / f"{stem}.csv").read_bytes() for w in (1, a.workers)]
        docs = [json.loads((root / f"out{w}" / f"{stem}.json").read_text()) for w in (1, a.workers)]
        for d in docs:
            d.pop("created")
            d.pop("versions")
    result = {
        "command": ["genies", "run", *args],
        "cpu_count": os.cpu_count(),
        "runs": runs,
        "speedup": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
        "csv_identical": csv[0] == csv[1],
        "json_identical": docs[0] == docs[1],
    }
    print(json.dumps(result, indent=1))
    out = HERE / "results" / f"workers-{stem}-{a.limit}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
