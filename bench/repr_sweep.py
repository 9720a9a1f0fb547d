"""Representation methods over a named subset of GENIES shifts: forward tokens and wall time.

    python bench/repr_sweep.py --limit 20 [--wall-limit 8] [--model smollm2-135m]

In one process, on the official data (``$GENIES_DATA_DIR``):

1. **Sweep** (fresh store, cache on): all seven representation methods one after the other over
   SHIFTS with ``--limit``. Counted: the tokens the forward engine actually runs for activations
   (``ForwardEngine.extract``'s ``real_tokens``), and what the upstream design would run — every
   ``ctx.activations`` call of every fit and evaluation of every method recomputed, one sequence at a
   time, no prefix sharing (each call's distinct texts, rendered, tokenised: a lower bound, since
   upstream also re-embeds the correct response once per pair). Also each method's source-ID and
   generalization accuracy per shift (real-data numbers).
2. **Wall time, cache vs no cache** (``--wall-limit``, methods WALL_METHODS, two fresh stores): the
   same sweep with the activation cache, and with it disabled (every ``ctx.activations`` call runs
   the engine; activations nodes count as done). Zero-shot baselines are computed in both.

Writes bench/results/repr_sweep-<limit>.json and prints a summary. The machine may be shared: the
wall ratio is of two runs measured one after the other, with load averages recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHIFTS = [
    {"source": "us_history_textbook", "target": "us_history_fiction", "category": "context"},
    {"source": "alpaca_mmlu", "target": "spanish_output", "category": "encoding"},
]
METHODS = ["mms", "lat_stim_1", "lat_pca", "linear_probe", "cra", "ccs", "lat_stim_2"]
WALL_METHODS = ["mms", "lat_stim_1"]


class Meter:
    """Counts engine extraction tokens and what the upstream design would compute."""

    def __init__(self, model: str) -> None:
        from genies.models.loading import load_tokenizer

        self.tok = load_tokenizer(model)
        self.engine_tokens = 0
        self.upstream_tokens = 0
        self.calls = 0

    def install(self) -> None:
        from genies.api.context import InterventionContext
        from genies.models.engine import ForwardEngine
        from genies.models.lengths import encode_texts

        meter = self
        extract, activations = ForwardEngine.extract, InterventionContext.activations
        reader = InterventionContext.activation_reader

        def counted_extract(self, *a, **kw):
            before = self.counters["real_tokens"]
            out = extract(self, *a, **kw)
            meter.engine_tokens += self.counters["real_tokens"] - before
            return out

        def counted_activations(self, texts, sites, template=None):
            meter.calls += 1
            meter.upstream_tokens += sum(len(ids) for ids in encode_texts(meter.tok, list(texts), template))
            return activations(self, texts, sites, template)

        def counted_reader(self, texts, site, template=None):
            meter.calls += 1
            meter.upstream_tokens += sum(len(ids) for ids in encode_texts(meter.tok, list(texts), template))
            return reader(self, texts, site, template)

        ForwardEngine.extract = counted_extract
        InterventionContext.activations = counted_activations
        InterventionContext.activation_reader = counted_reader


class NoCache:
    """The activation cache disabled: every read runs the engine; nothing is stored."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.stats: dict[str, int] = {}

    def missing(self, texts, sites=(), template=None):
        return []

    def get(self, engine, texts, sites=("resid", "heads"), template=None, **_: Any):
        return engine().extract(list(texts), tuple(sites), template)

    def reader(self, engine, texts, site, template=None):
        return _MemoryReader(site, engine().extract(list(texts), (site,), template)[site].float().numpy())


class _MemoryReader:
    """``SiteReader``'s interface over an array in memory (what the fits read without the cache)."""

    def __init__(self, site: str, arr: Any) -> None:
        self.site, self.shape, self._arr = site, tuple(arr.shape), arr

    def read(self, block: slice = slice(None)) -> Any:
        return self._arr[:, block]


def _run(name: str, suite: Path, store: Path, out: Path, args, limit: int) -> tuple[Any, float]:
    from genies.pipeline.suite import RunOptions, run_suite

    sets = ("intervention.num_epochs=1000",) if name == "ccs" else ()
    t0 = time.perf_counter()
    outcome = run_suite(
        RunOptions(
            intervention=name,
            suite=str(suite),
            model=args.model,
            limit=limit,
            store=str(store),
            out=str(out / name),
            device="cpu",
            progress=False,
            sets=sets,
        )  # fmt: skip
    )
    return outcome, time.perf_counter() - t0


def sweep(args, tmp: Path, suite: Path) -> dict[str, Any]:
    meter = Meter(args.model)
    meter.install()
    rows: dict[str, Any] = {}
    for name in METHODS:
        outcome, wall = _run(name, suite, tmp / "sweep-store", tmp / "out", args, args.limit)
        rows[name] = {
            "wall_s": round(wall, 1),
            "counters": outcome.counters.as_dict(),
            "shifts": [
                {
                    "source": r.source,
                    "target": r.target,
                    "source_ID_accuracy": r.source_ID_accuracy,
                    "generalization_accuracy": r.generalization_accuracy,
                    "baseline_accuracy": r.baseline_accuracy,
                    "target_tuned_capability": r.target_tuned_capability,
                }  # fmt: skip
                for r in outcome.result.rows
            ],
        }
        print(f"{name}: {wall:.0f} s, {json.dumps(rows[name]['shifts'])}", flush=True)
        print(
            f"  tokens so far: engine {meter.engine_tokens}, upstream design {meter.upstream_tokens}",
            flush=True,
        )
    return {
        "methods": rows,
        "engine_tokens": meter.engine_tokens,
        "upstream_tokens": meter.upstream_tokens,
        "activation_calls": meter.calls,
        "token_ratio": round(meter.upstream_tokens / max(meter.engine_tokens, 1), 2),
    }


def wall(args, tmp: Path, suite: Path) -> dict[str, Any]:
    import genies.api.context as context
    import genies.pipeline.kinds as kinds

    out: dict[str, Any] = {}
    for mode in ("cached", "uncached"):
        if mode == "uncached":
            context.open_activation_cache = kinds.open_activation_cache = NoCache  # type: ignore[assignment]
        load = os.getloadavg()
        t0 = time.perf_counter()
        for name in WALL_METHODS:
            _run(name, suite, tmp / f"wall-{mode}", tmp / f"wall-out-{mode}", args, args.wall_limit)
        out[mode] = {
            "wall_s": round(time.perf_counter() - t0, 1),
            "load_before": load,
            "load_after": os.getloadavg(),
        }
        print(f"{mode}: {out[mode]['wall_s']} s", flush=True)
    out["ratio"] = round(out["uncached"]["wall_s"] / out["cached"]["wall_s"], 2)
    return out


def count_planned(args, tmp: Path, suite: Path, limit: int) -> dict[str, Any]:
    """Forward tokens from the plans alone (tokenizer only, no model): the cached design embeds each
    distinct (template, text) of every ``activations`` node once; the upstream design embeds, for
    every fit and every evaluation of every method, each pair's two texts under each template it
    reads, one sequence at a time (the correct response again for every pair)."""
    from genies.data import load_distribution
    from genies.models.lengths import encode_texts
    from genies.models.loading import load_tokenizer
    from genies.pipeline.nodes import activation_texts, select_pairs
    from genies.pipeline.suite import RunOptions, prepare_run

    tok = load_tokenizer(args.model)
    dists: dict[str, Any] = {}
    length: dict[tuple[Any, tuple[str, str]], int] = {}

    def tokens(texts, template) -> list[int]:
        todo = [t for t in texts if (template, t) not in length]
        for t, ids in zip(todo, encode_texts(tok, todo, template), strict=True):
            length[(template, t)] = len(ids)
        return [length[(template, t)] for t in texts]

    cached: set[tuple[Any, tuple[str, str]]] = set()
    upstream = 0
    per_method = {}
    for name in METHODS:
        prepared = prepare_run(RunOptions(intervention=name, suite=str(suite), model=args.model, limit=limit,
                                          store=str(tmp / "count-store"), out=str(tmp / "count-out" / name),
                                          device="cpu", progress=False))  # fmt: skip
        graph = prepared.plan.graph
        mine = 0
        for node in graph:
            if node.kind not in ("state", "evaluation"):
                continue
            inputs = node.inputs["state"] if node.kind == "evaluation" else node.inputs
            if inputs["intervention"] != name:
                continue
            for dep in node.deps:
                act = graph[dep]
                if act.kind != "activations":
                    continue
                dist_id = act.inputs["data"]["distribution"]
                dist = dists.setdefault(dist_id, load_distribution(dist_id))
                template = act.inputs["spec"]["template"]
                texts = activation_texts(dist, act.inputs)
                cached.update((template, t) for t in texts)
                if node.kind == "evaluation":
                    pairs = select_pairs(dist, node.inputs["eval"])
                    texts = [t for p in pairs for t in ((p.prompt, p.correct), (p.prompt, p.incorrect))]
                mine += sum(tokens(texts, template))
        per_method[name] = mine
        upstream += mine
    distinct = sum(length[k] for k in cached)
    return {"upstream_tokens": upstream, "per_method": per_method, "cached_distinct_text_tokens": distinct,
            "ratio": round(upstream / max(distinct, 1), 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--wall-limit", type=int, default=8)
    ap.add_argument("--skip-wall", action="store_true")
    ap.add_argument("--count-only", action="store_true", help="Only count planned forward tokens (no model).")
    ap.add_argument(
        "--suite", default=None, help="A suite instead of SHIFTS (e.g. genies; with --count-only)"
    )
    args = ap.parse_args()
    shifts = SHIFTS
    if args.suite is not None:
        from genies.shifts import get_suite

        shifts = [
            {"source": s.source, "target": s.target, "category": s.category} for s in get_suite(args.suite)
        ]
    with tempfile.TemporaryDirectory(prefix="genies-repr-bench-") as d:
        tmp = Path(d)
        suite = tmp / "suite.json"
        suite.write_text(json.dumps(shifts), encoding="utf-8")
        tag = f"{args.suite}-{args.limit}" if args.suite else str(args.limit)
        if args.count_only:
            counted = count_planned(args, tmp, suite, args.limit)
            dest = HERE / "results" / f"repr_sweep-count-{tag}.json"
            dest.write_text(
                json.dumps({"model": args.model, "limit": args.limit, "shifts": shifts, **counted}, indent=1)
            )
            print(json.dumps(counted), f"wrote {dest}")
            return
        t0 = time.perf_counter()
        result: dict[str, Any] = {"model": args.model, "limit": args.limit, "shifts": shifts,
                                  "cpu_count": os.cpu_count(), "sweep": sweep(args, tmp, suite)}  # fmt: skip
        result["sweep"]["wall_s"] = round(time.perf_counter() - t0, 1)
        # The upstream design's tokens counted from the plans (each pair's two texts per fit and
        # evaluation, duplicates included, as one-sequence-at-a-time code embeds them) against what
        # the engine ran: the meter's count above dedups texts within a call, a lower bound.
        planned = count_planned(args, tmp, suite, args.limit)
        result["sweep"]["planned"] = planned
        result["sweep"]["token_ratio_planned_upstream"] = round(
            planned["upstream_tokens"] / max(result["sweep"]["engine_tokens"], 1), 2
        )
        if not args.skip_wall:
            result["wall"] = {"limit": args.wall_limit, "methods": WALL_METHODS, **wall(args, tmp, suite)}
    dest = HERE / "results" / f"repr_sweep-{tag}.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(result, indent=1), encoding="utf-8")
    s = result["sweep"]
    print(f"forward tokens: engine {s['engine_tokens']}, upstream design {s['upstream_tokens']} "
          f"(ratio {s['token_ratio']}x; against the planned upstream count {s['planned']['upstream_tokens']}: "
          f"{s['token_ratio_planned_upstream']}x); wrote {dest}")  # fmt: skip
    if "wall" in result:
        print(f"wall: cached {result['wall']['cached']['wall_s']} s, uncached {result['wall']['uncached']['wall_s']} s "
              f"(ratio {result['wall']['ratio']}x)")  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
