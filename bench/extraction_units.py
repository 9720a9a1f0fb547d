"""What the activation cache's extraction units cost: one packed call vs one prompt per forward vs one
text per forward, side by side in one process.

    python bench/extraction_units.py [--model smollm2-135m] [--examples 12] [--rounds 3]
                                     [--distributions alpaca_mmlu crt_1 code_hard]

For each distribution: the texts of its first ``--examples`` training examples (every response),
all three sites, extracted (a) in one ``ForwardEngine.extract`` call (the engine packs them into
token trees across prompts), (b) one call per prompt, its texts sorted by hash (what
``ActivationCache`` does since extraction became composition-invariant), (c) one call per text.
Medians of ``--rounds`` alternated rounds. Also recorded: the largest difference between (a) and (b)
(float rounding of packing) and whether (b) reproduces itself bit for bit when the calls run in
another order. Writes bench/results/extraction_units.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITES = ("resid", "heads", "final")


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def _per_prompt(engine, texts, reverse: bool = False):
    import torch

    from genies.models.activation_cache import extraction_units, text_sha256
    from genies.models.templates import render_all

    hashes = [text_sha256(t) for t in render_all(texts, None)]
    units = extraction_units(texts, hashes, set(hashes))
    rows: dict[str, dict[str, torch.Tensor]] = {}
    for unit in units[::-1] if reverse else units:
        acts = engine.extract([t for _, t in unit], SITES)
        for k, (h, _) in enumerate(unit):
            rows[h] = {s: acts[s][k] for s in SITES}
    return {s: torch.stack([rows[h][s] for h in hashes]) for s in SITES}


def measure(engine, dist: str, n_examples: int, rounds: int) -> dict:
    import torch

    from genies.data import load_distribution

    d = load_distribution(dist)
    texts = list(dict.fromkeys((e.prompt, r) for e in d.train.examples[:n_examples] for r in e.texts))
    engine.extract(texts[:2], SITES)  # warm-up (and the engine's one-time self-check)
    times: dict[str, list[float]] = {"packed": [], "per_prompt": [], "per_text": []}
    packed = unit = None
    for _ in range(rounds):
        t, packed = _timed(lambda: engine.extract(texts, SITES))
        times["packed"].append(t)
        t, unit = _timed(lambda: _per_prompt(engine, texts))
        times["per_prompt"].append(t)
        t, _ = _timed(lambda: [engine.extract([x], SITES) for x in texts])
        times["per_text"].append(t)
    again = _per_prompt(engine, texts, reverse=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "texts": len(texts),
        "prompts": len({t[0] for t in texts}),
        "seconds": med,
        "per_prompt_vs_packed": round(med["per_prompt"] / med["packed"], 3),
        "per_text_vs_packed": round(med["per_text"] / med["packed"], 3),
        "max_abs_diff_packed_vs_per_prompt": {s: float((packed[s] - unit[s]).abs().max()) for s in SITES},
        "max_abs_resid": float(unit["resid"].abs().max()),
        "per_prompt_bitwise_in_any_order": all(torch.equal(unit[s], again[s]) for s in SITES),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--examples", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--distributions", nargs="+", default=["alpaca_mmlu", "crt_1", "code_hard"])
    args = ap.parse_args()

    import torch

    import genies  # noqa: F401  (numerics settings, as in a run)
    from genies.models.engine import ForwardEngine
    from genies.models.loading import load_model

    engine = ForwardEngine(load_model(args.model, device="cpu"))
    out = {"model": args.model, "threads": torch.get_num_threads(), "rounds": args.rounds, "results": {}}
    for dist in args.distributions:
        r = measure(engine, dist, args.examples, args.rounds)
        out["results"][dist] = r
        print(
            f"{dist}: {r['texts']} texts / {r['prompts']} prompts; per prompt {r['per_prompt_vs_packed']}x, "
            f"per text {r['per_text_vs_packed']}x of packed; packing moves resid by "
            f"{r['max_abs_diff_packed_vs_per_prompt']['resid']:.2e} (max |resid| {r['max_abs_resid']:.0f}); "
            f"per prompt bitwise in any order: {r['per_prompt_bitwise_in_any_order']}"
        )
    path = HERE / "results" / "extraction_units.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
