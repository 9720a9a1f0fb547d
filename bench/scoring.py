"""Benchmark of the scoring engine: genies vs a naive upstream-style reference vs lm-evaluation-harness.

Scores the same pairs (the first N/2 pairs, in upstream "all pairs" order, of ``alpaca_mmlu`` and of
``code_hard``) with SmolLM2-135M in float32 on CPU, three ways:

* naive: upstream-style, one forward per pair (both responses, left-padded, batch of 2) with
  full-vocabulary logits and a float32 log-softmax;
* lm-eval: lm-evaluation-harness's HF backend ``loglikelihood`` on (prompt, response + eos);
* genies: ``genies.models.scoring.Scorer`` (prompt KV reuse, shared-prefix reuse, head only where needed).

The methods run interleaved in rounds over chunks of pairs, so load from other processes on the
machine hits all three alike. Reported: pairs/s and ratios, max |Δ log-prob| between genies and the
other two (and, on a few pairs, all three against a float64 forward), peak RSS, tokens/s against
the measured fp32 matmul throughput. Writes JSON to bench/results/.

    .venv/bin/python bench/scoring.py            # 500 pairs (several minutes)
    .venv/bin/python bench/scoring.py --pairs 40 # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = ("alpaca_mmlu", "code_hard")


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_pairs(n_pairs: int, data_dir: str | None):
    """First n/2 pairs of each distribution; falls back to ../shared's tarball if not imported."""
    from genies.data import load_distribution
    from genies.errors import GeniesError

    per = n_pairs // len(DISTRIBUTIONS)
    out = []
    for dist_id in DISTRIBUTIONS:
        try:
            dist = load_distribution(dist_id, data_dir=data_dir)
        except GeniesError:
            tarball = REPO.parent / "shared" / "genies-datasets.tar.gz"
            if not tarball.is_file():
                raise
            tmp = Path(tempfile.mkdtemp(prefix="genies-bench-"))
            with tarfile.open(tarball) as tar:
                members = [
                    m for m in tar.getmembers() if f"distributions/{dist_id}/" in m.name and m.isfile()
                ]
                tar.extractall(tmp, members=members, filter="data")
            dist = load_distribution(str(next(tmp.rglob(f"distributions/{dist_id}"))))
        pairs = dist.test.to_pairs("all")[:per]
        out += [(dist_id, p) for p in pairs]
    return out


def matmul_gflops(threads: int, seconds: float = 3.0) -> float:
    """Measured fp32 matmul throughput at the model's shapes (hidden 576 → MLP 1536), the physical limit."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    torch.mm(a, b)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        n += 1
    return 2 * 2048 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


# ------------------------------------------------------------------ the three methods


def naive_scores(lm, encoded_pairs):
    """Upstream-style: per pair, both sequences left-padded in one batch of 2, full logits, fp32 log-softmax.

    Returns per response the summed log-prob and, per pair, log p(last prompt token | rest of prompt).
    """
    import torch

    model, pad = lm.model, lm.tokenizer.pad_token_id
    out, last_tok = [], []
    with torch.inference_mode():
        for (ctx, rc), (_, rw) in encoded_pairs:
            seqs = [ctx + rc, ctx + rw]
            length = max(len(s) for s in seqs)
            ids = torch.full((2, length), pad, dtype=torch.long)
            mask = torch.zeros((2, length), dtype=torch.long)
            for i, s in enumerate(seqs):
                ids[i, length - len(s) :] = torch.tensor(s)
                mask[i, length - len(s) :] = 1
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            logp = torch.log_softmax(
                model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float(), dim=-1
            )
            for i, resp in enumerate((rc, rw)):
                start = length - len(resp)  # first response position
                tgt = torch.tensor(resp)
                out.append(float(logp[i, start - 1 : length - 1].gather(1, tgt[:, None]).double().sum()))
            s0 = length - len(seqs[0])
            last_tok.append(float(logp[0, s0 + len(ctx) - 2, ctx[-1]]) if len(ctx) > 1 else float("nan"))
    return out, last_tok


def make_lm_eval(folder: str, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=folder, device="cpu", dtype="float32", batch_size=batch_size, trust_remote_code=False
    )


def lm_eval_scores(hflm, requests, eos: str):
    from lm_eval.api.instance import Instance

    inst = [
        Instance(request_type="loglikelihood", doc={}, arguments=(p, r + eos), idx=i)
        for i, (p, r) in enumerate(requests)
    ]
    return [float(ll) for ll, _ in hflm.loglikelihood(inst, disable_tqdm=True)]


def exact_scores(lm, encoded):
    """float64 forward with full logits: the ground truth the float32 methods are compared against."""
    import torch

    model = lm.model.double()
    out = []
    with torch.inference_mode():
        for ctx, resp in encoded:
            logits = model(input_ids=torch.tensor([ctx + resp])).logits[0].double()
            lp = torch.log_softmax(logits[len(ctx) - 1 : -1], dim=-1)
            out.append(float(lp.gather(1, torch.tensor(resp)[:, None]).sum()))
    model.float()
    return out


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=500, help="pairs in all (half from each distribution)")
    ap.add_argument(
        "--threads", type=int, default=2, help="torch threads for every method (1 on a busy machine)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (chunks of pairs)")
    ap.add_argument("--lm-eval-batch", type=int, default=8)
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--exact-pairs", type=int, default=6, help="pairs also scored in float64 (0 = skip)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scoring.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from genies.models.loading import load_model
    from genies.models.scoring import Scorer

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    peak_gflops = matmul_gflops(args.threads)
    pairs = load_pairs(args.pairs, args.data_dir)
    t0 = time.perf_counter()
    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    load_s = time.perf_counter() - t0
    torch.set_num_threads(args.threads)
    scorer = Scorer(lm)
    requests = [(p.prompt, r) for _, p in pairs for r in (p.correct, p.incorrect)]
    encoded = scorer.encode(requests)
    enc_pairs = [(encoded[2 * i], encoded[2 * i + 1]) for i in range(len(pairs))]
    hflm = None if args.skip_lm_eval else make_lm_eval(lm.info["path"], args.lm_eval_batch)

    n_rounds = max(1, min(args.rounds, len(pairs)))
    chunks = np.array_split(np.arange(len(pairs)), n_rounds)
    timing = {"genies": 0.0, "naive": 0.0, "lm_eval": 0.0}
    res = {"genies": [0.0] * len(requests), "naive": [0.0] * len(requests), "lm_eval": [0.0] * len(requests)}
    last_tok = [0.0] * len(pairs)
    genies_rss = None
    genies_forwards = 0
    stats = {"real_tokens": 0, "padded_tokens": 0, "scored_tokens": 0}
    for r, chunk in enumerate(chunks):
        ridx = [j for i in chunk for j in (2 * i, 2 * i + 1)]
        t = time.perf_counter()
        sc = Scorer(lm)
        got = sc.score([requests[j] for j in ridx])
        timing["genies"] += time.perf_counter() - t
        genies_forwards += sc.forward_passes
        for k in stats:
            stats[k] += sc.stats[k]
        for j, s in zip(ridx, got, strict=True):
            res["genies"][j] = s.logprob_sum
        if genies_rss is None:
            genies_rss = rss_mb()
        t = time.perf_counter()
        vals, lt = naive_scores(lm, [enc_pairs[i] for i in chunk])
        timing["naive"] += time.perf_counter() - t
        for j, v in zip(ridx, vals, strict=True):
            res["naive"][j] = v
        for i, v in zip(chunk, lt, strict=True):
            last_tok[i] = v
        if hflm is not None:
            t = time.perf_counter()
            vals = lm_eval_scores(hflm, [requests[j] for j in ridx], scorer.eos)
            timing["lm_eval"] += time.perf_counter() - t
            for j, v in zip(ridx, vals, strict=True):
                res["lm_eval"][j] = v
        done = sum(len(c) for c in chunks[: r + 1])
        print(
            f"round {r + 1}/{n_rounds}: {done} pairs; "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timing.items() if v),
            flush=True,
        )

    g, nv = np.array(res["genies"]), np.array(res["naive"])
    report: dict = {
        "pairs": len(pairs),
        "distributions": {d: sum(1 for x, _ in pairs if x == d) for d in DISTRIBUTIONS},
        "threads": args.threads,
        "dtype": "float32",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "loadavg_start": round(load0, 2),
        "loadavg_end": round(os.getloadavg()[0], 2),
        "model_load_s": round(load_s, 2),
        "seconds": {k: round(v, 2) for k, v in timing.items() if v},
        "pairs_per_s": {k: round(len(pairs) / v, 3) for k, v in timing.items() if v},
        "genies_forward_passes": genies_forwards,
        "genies_token_stats": stats,
        "max_abs_delta": {"genies_vs_naive": float(np.max(np.abs(g - nv)))},
        "peak_rss_mb": {"after_genies": round(genies_rss or 0, 1), "whole_process": round(rss_mb(), 1)},
    }
    report["speedup"] = {"genies_vs_naive": round(timing["naive"] / timing["genies"], 2)}
    if hflm is not None:
        report["speedup"]["genies_vs_lm_eval"] = round(timing["lm_eval"] / timing["genies"], 2)
        # lm-eval moves the prompt's trailing "\n" into the continuation and tokenises jointly; compare
        # where its (context, continuation) tokens equal genies' (prompt[:-1], [prompt[-1]] + response)
        # and add log p(prompt[-1] | prompt[:-1]) (from the naive full-logit forward) to genies' score.
        same, deltas = 0, []
        for j, ((p, r), (ctx, resp)) in enumerate(zip(requests, encoded, strict=True)):
            c_enc, r_enc = hflm._encode_pair(p, r + scorer.eos)
            if c_enc == ctx[:-1] and r_enc == [ctx[-1]] + resp:
                same += 1
                deltas.append(abs(res["lm_eval"][j] - (res["genies"][j] + last_tok[j // 2])))
        report["lm_eval_comparison"] = {
            "requests_with_equal_tokens": same,
            "requests": len(requests),
            "method": "lm_eval_ll - (genies + log p(last prompt token | prompt[:-1]))",
        }
        report["max_abs_delta"]["genies_vs_lm_eval"] = float(max(deltas)) if deltas else None
    # tokens/s: task tokens = prompt + response tokens of every request (what a one-request-at-a-time
    # scorer must process); physical limit = measured matmul FLOP/s / (2 x all parameters) per token.
    n_params = sum(p.numel() for p in lm.model.parameters())
    cfg = lm.model.config
    head_params = cfg.vocab_size * cfg.hidden_size
    body_params = n_params - head_params  # tied embedding/head counted once, as the head
    task_tokens = sum(len(c) + len(r) for c, r in encoded)
    limit_tok_s = peak_gflops * 1e9 / (2 * (body_params + head_params))
    genies_flop = 2 * body_params * stats["real_tokens"] + 2 * head_params * stats["scored_tokens"]
    report["throughput"] = {
        "matmul_gflops_fp32": round(peak_gflops, 1),
        "task_tokens": task_tokens,
        "task_tokens_per_s": {k: round(task_tokens / v, 1) for k, v in timing.items() if v},
        "limit_tokens_per_s_full_forward": round(limit_tok_s, 1),
        "genies_effective_gflops": round(genies_flop / timing["genies"] / 1e9, 1),
        "genies_fraction_of_matmul_peak": round(genies_flop / timing["genies"] / 1e9 / peak_gflops, 3),
    }
    if args.exact_pairs > 0:
        k = min(args.exact_pairs, len(pairs))
        # the exact check takes pairs from both distributions
        pick = [
            i for d in DISTRIBUTIONS for i in [i for i, (x, _) in enumerate(pairs) if x == d][: (k + 1) // 2]
        ]
        ridx = [j for i in pick for j in (2 * i, 2 * i + 1)]
        ex = np.array(exact_scores(lm, [encoded[j] for j in ridx]))
        report["max_abs_error_vs_float64"] = {
            "requests": len(ridx),
            "genies": float(np.max(np.abs(g[ridx] - ex))),
            "naive": float(np.max(np.abs(nv[ridx] - ex))),
        }
        if hflm is not None:
            lt = np.array([last_tok[j // 2] for j in ridx])
            le = np.array([res["lm_eval"][j] for j in ridx]) - lt
            report["max_abs_error_vs_float64"]["lm_eval_minus_last_prompt_token"] = float(
                np.max(np.abs(le - ex))
            )
    report["targets"] = {
        "genies_within_1e-3_of_naive": report["max_abs_delta"]["genies_vs_naive"] <= 1e-3,
        "genies_within_1e-3_of_lm_eval": (report["max_abs_delta"].get("genies_vs_lm_eval") or 1.0) <= 1e-3,
        "genies_3x_naive": report["speedup"]["genies_vs_naive"] >= 3,
        "genies_2x_lm_eval": report["speedup"].get("genies_vs_lm_eval", 0) >= 2,
        # genies' own peak (measured after its first round, before the other methods ran)
        "genies_peak_rss_le_3GB": report["peak_rss_mb"]["after_genies"] <= 3 * 1024,
    }
    print_report(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def print_report(r: dict) -> None:
    print(f"\n== scoring benchmark: {r['pairs']} pairs {r['distributions']}, fp32, {r['threads']} threads ==")
    print(
        f"load average {r['loadavg_start']} -> {r['loadavg_end']} (other processes slow every method alike)"
    )
    for k, v in r["pairs_per_s"].items():
        print(f"  {k:8s} {v:8.2f} pairs/s  ({r['seconds'][k]:.1f} s)")
    print("  speedup: " + ", ".join(f"{k} {v}x" for k, v in r["speedup"].items()))
    print(
        "  max |Δ log-prob|: "
        + ", ".join(f"{k} {v:.2e}" for k, v in r["max_abs_delta"].items() if v is not None)
    )
    if "lm_eval_comparison" in r:
        c = r["lm_eval_comparison"]
        print(
            f"  lm-eval compared on {c['requests_with_equal_tokens']}/{c['requests']} requests with equal tokens: {c['method']}"
        )
    if "max_abs_error_vs_float64" in r:
        e = r["max_abs_error_vs_float64"]
        print(
            "  error vs float64 forward: "
            + ", ".join(f"{k} {v:.2e}" for k, v in e.items() if k != "requests")
        )
    print(f"  peak RSS: {r['peak_rss_mb']}")
    t = r["throughput"]
    print(
        f"  throughput: matmul {t['matmul_gflops_fp32']} GFLOP/s; task tokens/s {t['task_tokens_per_s']}; "
        f"full-forward limit {t['limit_tokens_per_s_full_forward']} tok/s; genies runs at "
        f"{t['genies_effective_gflops']} GFLOP/s = {100 * t['genies_fraction_of_matmul_peak']:.0f}% of matmul peak"
    )
    print("  targets: " + ", ".join(f"{k}={'ok' if v else 'MISSED'}" for k, v in r["targets"].items()))


if __name__ == "__main__":
    sys.exit(main())
