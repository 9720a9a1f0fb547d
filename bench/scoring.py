"""Benchmark of the forward engine against lm-evaluation-harness 0.4, side by side in one process.

For each distribution (default ``crt_1``, 250 pairs, and ``code_hard``, 150 pairs = 50 prompts with
three pairs each; upstream "all pairs" order), SmolLM2-135M in float32 on CPU with the same torch threads for everything (default 2):

* **lm-eval**: lm-evaluation-harness's HF backend ``loglikelihood(prompt, response + eos)``, batch 8;
* **genies score**: ``ForwardEngine.score`` on the same requests;
* **genies extract**: ``ForwardEngine.extract(sites=("resid", "heads"))`` on the same prompt +
  response texts (what MMS/LAT read), for the extraction-vs-scoring throughput;
* **matmul peak**: ``F.linear`` with the model's own weight matrices (layer 0's q, k, v, o, gate,
  up, down) on inputs of the engine's batch size, i.e. exactly the GEMMs a forward runs, timed in
  the same process, same threads, in every round.

The work is cut into rounds (chunks of pairs); each round runs the peak probe and the three methods
back to back, rotating their order, so load from other processes on the machine hits all alike.
Reported per distribution: seconds and pairs/s, the speed ratio (total, and the median over rounds),
the FLOPs each method executes (counted, not estimated: genies' engine counters; a forward hook on
lm-eval's model for its batch shapes), their GFLOP/s and share of the matmul peak, extraction vs
scoring tokens/s, agreement with lm-eval on equal tokens, peak memory and the load average.

    .venv/bin/python bench/scoring.py                       # crt_1 250 pairs, code_hard 150 (long on a busy machine)
    .venv/bin/python bench/scoring.py --pairs 40 --rounds 2 # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_pairs(dist_id: str, n_pairs: int, data_dir: str | None):
    """The first ``n_pairs`` test pairs; from the data store, else from ../shared's tarball."""
    from genies.data import load_distribution
    from genies.errors import GeniesError

    try:
        dist = load_distribution(dist_id, data_dir=data_dir)
    except GeniesError:
        tarball = REPO.parent / "shared" / "genies-datasets.tar.gz"
        if not tarball.is_file():
            raise
        tmp = Path(tempfile.mkdtemp(prefix="genies-bench-"))
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if f"distributions/{dist_id}/" in m.name and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        dist = load_distribution(str(next(tmp.rglob(f"distributions/{dist_id}"))))
    return dist.test.to_pairs("all")[:n_pairs]


# ------------------------------------------------------------------ FLOPs and the matmul peak


class Shapes:
    """Parameter counts of SmolLM2 that turn token counts into FLOPs."""

    def __init__(self, model) -> None:
        import torch

        layers = model.model.layers
        self.linear = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
        cfg = model.config
        self.head = cfg.vocab_size * cfg.hidden_size
        self.attn = 4 * cfg.num_attention_heads * (cfg.hidden_size // cfg.num_attention_heads) * len(layers)
        self.weights = [m.weight for m in layers[0].modules() if isinstance(m, torch.nn.Linear)]
        self.lm_head = model.get_output_embeddings().weight

    def genies(self, c: dict) -> dict:
        """FLOPs from engine counters: linear layers on every distinct token, the vocabulary head on
        scored positions, attention on the (query, key) pairs causal attention needs."""
        lin, head = 2 * self.linear * c["real_tokens"], 2 * self.head * c["scored_tokens"]
        attn, attn_done = self.attn * c["attention_pairs"], self.attn * c["attention_slots"]
        return {
            "linear": lin,
            "head": head,
            "attention": attn,
            "attention_computed": attn_done,
            "total": lin + head + attn,
        }

    def lm_eval(self, calls: list[tuple[int, int, int]]) -> dict:
        """FLOPs of lm-eval's forwards (batch, width, real tokens): linear layers and the vocabulary head
        on every padded position (it takes logits everywhere), causal attention on real tokens."""
        padded = sum(b * w for b, w, _ in calls)
        lin, head = 2 * self.linear * padded, 2 * self.head * padded
        attn = self.attn * sum(r * (w + 1) // 2 for _, w, r in calls)  # ~causal pairs of the real tokens
        return {"linear": lin, "head": head, "attention": attn, "total": lin + head + attn}


def matmul_peak(shapes: Shapes, tokens: int, seconds: float) -> dict:
    """GFLOP/s of the model's own GEMMs: every layer weight at ``tokens`` rows, the head at 256 rows."""
    import torch
    import torch.nn.functional as F

    xs = [torch.randn(tokens, w.shape[1]) for w in shapes.weights]
    xh = torch.randn(256, shapes.lm_head.shape[1])
    flop_layer = sum(2 * tokens * w.numel() for w in shapes.weights)
    with torch.inference_mode():
        for x, w in zip(xs, shapes.weights, strict=True):
            F.linear(x, w)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for x, w in zip(xs, shapes.weights, strict=True):
                F.linear(x, w)
            n += 1
        body = flop_layer * n / (time.perf_counter() - t0) / 1e9
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            F.linear(xh, shapes.lm_head)
            n += 1
        head = 2 * 256 * shapes.lm_head.numel() * n / (time.perf_counter() - t0) / 1e9
    return {"body_gflops": body, "head_gflops": head}


# ------------------------------------------------------------------ the methods


def make_lm_eval(folder: str, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    return HFLM(
        pretrained=folder, device="cpu", dtype="float32", batch_size=batch_size, trust_remote_code=False
    )


def lm_eval_scores(hflm, requests, eos: str) -> list[float]:
    from lm_eval.api.instance import Instance

    inst = [
        Instance(request_type="loglikelihood", doc={}, arguments=(p, r + eos), idx=i)
        for i, (p, r) in enumerate(requests)
    ]
    return [float(ll) for ll, _ in hflm.loglikelihood(inst, disable_tqdm=True)]


def record_shapes(model, calls: list):
    """A forward pre-hook on lm-eval's model: (batch, width, real tokens) of every forward."""

    def hook(_mod, args, kwargs):
        ids = args[0] if args else kwargs.get("input_ids")
        mask = kwargs.get("attention_mask")
        real = int(mask.sum()) if mask is not None else ids.numel()
        calls.append((int(ids.shape[0]), int(ids.shape[1]), real))

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def exact_scores(lm, encoded) -> list[float]:
    """float64 forward with full logits: the ground truth the float32 methods are compared against."""
    import torch

    model = lm.model.double()
    out = []
    try:
        with torch.inference_mode():
            for ctx, resp in encoded:
                logits = model(input_ids=torch.tensor([ctx + resp])).logits[0].double()
                lp = torch.log_softmax(logits[len(ctx) - 1 : -1], dim=-1)
                out.append(float(lp.gather(1, torch.tensor(resp)[:, None]).sum()))
    finally:
        model.float()
    return out


# ------------------------------------------------------------------ one distribution


def run_distribution(dist_id, pairs, lm, engine, get_hflm, args, shapes) -> dict:
    """Interleaved rounds of peak probe, genies score, genies extract and lm-eval on chunks of pairs."""
    import numpy as np

    requests = [(p.prompt, r) for p in pairs for r in (p.correct, p.incorrect)]
    texts = list(requests)
    encoded = engine.encode(requests)
    score_tokens = sum(len(c) + len(r) for c, r in encoded)
    text_tokens = sum(len(ids) for ids in lm.tokenizer([p + r for p, r in texts])["input_ids"])
    chunks = np.array_split(np.arange(len(pairs)), max(1, min(args.rounds, len(pairs))))
    seconds = {"genies": [], "lm_eval": [], "extract": []}
    peaks: list[dict] = []
    genies = [0.0] * len(requests)
    lm_eval = [0.0] * len(requests)
    calls: list[tuple[int, int, int]] = []
    c0 = dict(engine.counters)
    flops_extract = {"real_tokens": 0, "scored_tokens": 0, "attention_pairs": 0, "attention_slots": 0}
    rss_genies = None
    for r, chunk in enumerate(chunks):
        ridx = [j for i in chunk for j in (2 * i, 2 * i + 1)]
        reqs = [requests[j] for j in ridx]
        order = ["genies", "extract", "lm_eval"] if r % 2 == 0 else ["lm_eval", "extract", "genies"]
        peaks.append(matmul_peak(shapes, args.peak_tokens, args.peak_seconds))
        for method in order:
            t = time.perf_counter()
            if method == "genies":
                for j, s in zip(ridx, engine.score(reqs), strict=True):
                    genies[j] = s.logprob_sum
            elif method == "extract":
                before = dict(engine.counters)
                engine.extract(reqs, ("resid", "heads"))
                for k in flops_extract:
                    flops_extract[k] += engine.counters[k] - before[k]
            else:
                hflm = get_hflm()
                handle = record_shapes(hflm.model, calls)
                try:
                    vals = lm_eval_scores(hflm, reqs, lm.tokenizer.eos_token)
                finally:
                    handle.remove()
                for j, v in zip(ridx, vals, strict=True):
                    lm_eval[j] = v
            seconds[method].append(time.perf_counter() - t)
            if rss_genies is None and method == "extract":
                rss_genies = rss_mb()
        print(
            f"  {dist_id} round {r + 1}/{len(chunks)}: "
            + ", ".join(f"{k} {sum(v):.1f}s" for k, v in seconds.items())
            + f"; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    counted = {k: engine.counters[k] - c0[k] - flops_extract.get(k, 0) for k in engine.counters}
    fl_g, fl_l = shapes.genies(counted), shapes.lm_eval(calls)
    fl_x = shapes.genies(flops_extract)
    tg, tl, tx = (sum(seconds[k]) for k in ("genies", "lm_eval", "extract"))
    peak = statistics.median(p["body_gflops"] for p in peaks)
    per_round = [lt / gt for lt, gt in zip(seconds["lm_eval"], seconds["genies"], strict=True)]
    out = {
        "pairs": len(pairs),
        "requests": len(requests),
        "distinct_prompts": len({p.prompt for p in pairs}),
        "seconds": {"genies": round(tg, 2), "lm_eval": round(tl, 2), "genies_extract": round(tx, 2)},
        "pairs_per_s": {"genies": round(len(pairs) / tg, 3), "lm_eval": round(len(pairs) / tl, 3)},
        "speedup_vs_lm_eval": round(tl / tg, 2),
        "speedup_per_round": [round(x, 2) for x in per_round],
        "speedup_median_round": round(statistics.median(per_round), 2),
        "tokens": {
            "task_tokens_scoring": score_tokens,
            "task_tokens_extraction": text_tokens,
            "genies_computed": counted["real_tokens"],
            "genies_scored": counted["scored_tokens"],
            "lm_eval_computed_padded": sum(b * w for b, w, _ in calls),
            "lm_eval_forwards": len(calls),
        },
        "tflop": {
            "genies": {k: round(v / 1e12, 3) for k, v in fl_g.items()},
            "lm_eval": {k: round(v / 1e12, 3) for k, v in fl_l.items()},
            "genies_extract": {k: round(v / 1e12, 3) for k, v in fl_x.items()},
        },
        "gflops": {
            "genies": round(fl_g["total"] / tg / 1e9, 1),
            "lm_eval": round(fl_l["total"] / tl / 1e9, 1),
            "genies_extract": round(fl_x["total"] / tx / 1e9, 1),
        },
        "matmul_peak_gflops": {
            "body_median": round(peak, 1),
            "body_per_round": [round(p["body_gflops"], 1) for p in peaks],
            "head_median": round(statistics.median(p["head_gflops"] for p in peaks), 1),
        },
        "throughput_tokens_per_s": {
            "scoring": round(score_tokens / tg, 1),
            "extraction": round(text_tokens / tx, 1),
            "lm_eval": round(score_tokens / tl, 1),
        },
        "peak_rss_mb_after_genies_first_round": round(rss_genies or 0, 1),
    }
    out["share_of_peak"] = {
        k: round(out["gflops"][k] / peak, 3) for k in ("genies", "lm_eval", "genies_extract")
    }
    out["extraction_vs_scoring_tokens_per_s"] = round(
        out["throughput_tokens_per_s"]["extraction"] / out["throughput_tokens_per_s"]["scoring"], 3
    )
    out["agreement"] = agreement(lm, engine, get_hflm(), requests, encoded, genies, lm_eval)
    return out


def agreement(lm, engine, hflm, requests, encoded, genies, lm_eval) -> dict:
    """lm-eval moves a prompt's trailing whitespace into the continuation and tokenises jointly; where
    its (context, continuation) tokens equal genies' (prompt[:-1], [prompt[-1]] + response), compare
    ``lm_eval`` with ``genies + log p(prompt[-1] | prompt[:-1])`` (the extra term scored by the engine)."""
    same = []
    for j, ((p, r), (ctx, resp)) in enumerate(zip(requests, encoded, strict=True)):
        c_enc, r_enc = hflm._encode_pair(p, r + lm.tokenizer.eos_token)
        if len(ctx) > 1 and c_enc == ctx[:-1] and r_enc == [ctx[-1]] + resp:
            same.append(j)
    extra = engine.score_tokens([(encoded[j][0][:-1], encoded[j][0][-1:]) for j in same])
    deltas = [abs(lm_eval[j] - (genies[j] + e)) for j, e in zip(same, extra, strict=True)]
    return {
        "requests_with_equal_tokens": len(same),
        "requests": len(requests),
        "max_abs_delta_vs_lm_eval": max(deltas) if deltas else None,
    }


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distributions", nargs="+", default=["crt_1", "code_hard"])
    ap.add_argument(
        "--pairs",
        type=int,
        nargs="+",
        default=[250, 150],
        help="pairs per distribution (one number, or one each)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch threads for every method")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per distribution")
    ap.add_argument("--lm-eval-batch", type=int, default=8)
    ap.add_argument(
        "--peak-tokens", type=int, default=None, help="rows of the peak probe (default: engine batch)"
    )
    ap.add_argument("--peak-seconds", type=float, default=2.0)
    ap.add_argument("--exact-pairs", type=int, default=2, help="pairs per distribution re-scored in float64")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "engine.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from genies.models.engine import ForwardEngine
    from genies.models.loading import load_model

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    torch.set_num_threads(args.threads)
    engine = ForwardEngine(lm)
    engine.score([("warm ", "up")])  # the self-check runs once per engine, outside the timing
    engine.extract([("warm ", "up")], ("resid",))
    shapes = Shapes(lm.model)
    args.peak_tokens = args.peak_tokens or engine._budget(None, "tree").max_tokens
    state = {"hflm": None}

    def get_hflm():
        if state["hflm"] is None:
            state["hflm"] = make_lm_eval(lm.info["path"], args.lm_eval_batch)
            torch.set_num_threads(args.threads)
        return state["hflm"]

    report: dict = {
        "model": "smollm2-135m",
        "dtype": "float32",
        "threads": args.threads,
        "lm_eval_batch": args.lm_eval_batch,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "engine_tokens_per_forward": args.peak_tokens,
        "loadavg_start": [round(x, 2) for x in load0],
        "distributions": {},
    }
    counts = (
        args.pairs
        if len(args.pairs) == len(args.distributions)
        else [args.pairs[0]] * len(args.distributions)
    )
    for dist_id, n_pairs in zip(args.distributions, counts, strict=True):
        pairs = load_pairs(dist_id, n_pairs, args.data_dir)
        print(f"{dist_id}: {len(pairs)} pairs", flush=True)
        res = run_distribution(dist_id, pairs, lm, engine, get_hflm, args, shapes)
        if args.exact_pairs:
            reqs = [(p.prompt, r) for p in pairs[: args.exact_pairs] for r in (p.correct, p.incorrect)]
            exact = np.array(exact_scores(lm, engine.encode(reqs)))
            fast = np.array([s.logprob_sum for s in engine.score(reqs)])
            res["max_abs_error_vs_float64"] = {
                "requests": len(reqs),
                "genies": float(np.max(np.abs(fast - exact))),
            }
        report["distributions"][dist_id] = res
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    report["peak_rss_mb_whole_process"] = round(rss_mb(), 1)
    report["targets"] = {
        d: {
            "speedup_vs_lm_eval_ge_2": r["speedup_vs_lm_eval"] >= 2,
            "share_of_peak_ge_0.6": r["share_of_peak"]["genies"] >= 0.6,
            "extraction_within_1.5x_of_scoring": r["extraction_vs_scoring_tokens_per_s"] >= 1 / 1.5,
        }
        for d, r in report["distributions"].items()
    }
    print_report(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def print_report(r: dict) -> None:
    print(
        f"\n== forward engine benchmark: SmolLM2-135M fp32, {r['threads']} threads, lm-eval batch {r['lm_eval_batch']} =="
    )
    print(f"load average at start {r['loadavg_start']}, at end {r['loadavg_end']} ({r['machine']})")
    for d, x in r["distributions"].items():
        t = x["throughput_tokens_per_s"]
        print(
            f"{d} ({x['pairs']} pairs): genies {x['pairs_per_s']['genies']} pairs/s, lm-eval {x['pairs_per_s']['lm_eval']}"
            f" -> {x['speedup_vs_lm_eval']}x (median round {x['speedup_median_round']}x)"
        )
        print(
            f"  TFLOP genies {x['tflop']['genies']['total']} vs lm-eval {x['tflop']['lm_eval']['total']}; "
            f"GFLOP/s genies {x['gflops']['genies']}, lm-eval {x['gflops']['lm_eval']}; matmul peak "
            f"{x['matmul_peak_gflops']['body_median']} -> share genies {x['share_of_peak']['genies']}, "
            f"lm-eval {x['share_of_peak']['lm_eval']}"
        )
        print(
            f"  tokens/s: scoring {t['scoring']}, extraction {t['extraction']} "
            f"({x['extraction_vs_scoring_tokens_per_s']}x), lm-eval {t['lm_eval']}; agreement {x['agreement']}"
        )
    print("targets:", r["targets"])


if __name__ == "__main__":
    sys.exit(main())
