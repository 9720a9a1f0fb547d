"""LoRA / prompt-tuning reward model vs zero-shot on SmolLM2 (issue #11's measured bar).

    .venv/bin/python bench/tune_smollm2.py --intervention lora_fine_tune --steps 60 --batch 8 --limit 100

Trains on alpaca_mmlu's train split (one pair per example, seeded), evaluates on the first ``--limit``
pairs of its test split, and prints both accuracies, training time, training tokens/s (real tokens of
chosen + rejected sequences, forward + backward), the adapter size (safetensors bytes of the state)
and the process's peak RSS. Both evaluations run in this process, side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--intervention", default="lora_fine_tune")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--distribution", default="alpaca_mmlu")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more config, as genies --set (TOML values)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from genies.api.context import InterventionContext
    from genies.data.loading import load_distribution
    from genies.interventions.registry import get_intervention
    from genies.metrics import summarize
    from genies.models.loading import load_model
    from genies.pipeline.config import parse_value

    lm = load_model(args.model, device="cpu")
    dist = load_distribution(args.distribution)
    train, test = dist.split("train"), dist.split("test")
    pairs = test.to_pairs("all")[: args.limit]

    @contextlib.contextmanager
    def progress(total, what):
        seen = [0]

        def advance(n=1):
            seen[0] += n
            if n and (seen[0] % 10 == 0 or seen[0] == total or "fit" in what):
                print(f"  {what}: {seen[0]}/{total} ({time.strftime('%H:%M:%S')})", flush=True)

        yield advance

    ctx = InterventionContext.for_model(lm, seed=args.seed, log=print, progress=progress)
    zs = get_intervention("zero_shot")
    zcfg = zs.make_config({})
    t0 = time.perf_counter()
    z = zs.score_pairs(ctx, zs.fit(ctx, train, zcfg), pairs, zcfg)
    zero_s = time.perf_counter() - t0
    rss_zero = _peak_rss_mb()
    print(
        f"zero_shot accuracy {summarize(z.p_correct)['accuracy']:.4f} on {len(pairs)} pairs ({zero_s:.0f}s)",
        flush=True,
    )
    it = get_intervention(args.intervention)
    values = {"num_train_steps": args.steps, "batch_size": args.batch}
    if args.lr is not None:
        values["learning_rate"] = args.lr
    for item in args.set:  # the values as genies' own --set reads them (TOML literals)
        key, _, raw = item.partition("=")
        values[key.strip()] = parse_value(raw.strip())
    cfg = it.make_config(values)
    t0 = time.perf_counter()
    state = it.fit(ctx, train, cfg)
    fit_s = time.perf_counter() - t0
    rss_fit = _peak_rss_mb()
    t0 = time.perf_counter()
    tuned = it.score_pairs(ctx, state, pairs, cfg)
    eval_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        state.save(tmp)
        size = (Path(tmp) / state.TENSOR_FILE).stat().st_size
    out = {
        "model": args.model,
        "distribution": args.distribution,
        "intervention": args.intervention,
        "config": cfg.model_dump(mode="json"),
        "pairs": len(pairs),
        "zero_shot_accuracy": summarize(z.p_correct)["accuracy"],
        "tuned_accuracy": summarize(tuned.p_correct)["accuracy"],
        "tuned_metrics": summarize(tuned.p_correct),
        "zero_shot_s": round(zero_s, 1),
        "train_s": round(fit_s, 1),
        "train_loop_s": state.meta["train_seconds"],
        "train_tokens": state.meta["train_tokens"],
        "train_tokens_per_s": round(state.meta["train_tokens"] / state.meta["train_seconds"], 1),
        "eval_s": round(eval_s, 1),
        "state_bytes": size,
        "peak_rss_mb": _peak_rss_mb(),
        # the process's peak after each stage: which stage sets the peak
        "peak_rss_mb_after": {"zero_shot": rss_zero, "fit": rss_fit, "eval": _peak_rss_mb()},
        "train_log": state.meta["train_log"],
    }
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
