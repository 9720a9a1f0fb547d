"""What thread-invariant CPU numerics cost: MKL's strict mode and the training softmax backward.

    python bench/numerics.py [--model smollm2-135m] [--rounds 3] [--texts 48] [--pairs 8]

1. ``MKL_CBWR=AUTO,STRICT`` (what ``genies._numerics`` sets) against ``MKL_CBWR=OFF`` (MKL's default):
   MKL reads it once per process, so each round runs one child process per mode, alternating which
   goes first, and each child times the same work: a GEMM at the model's MLP shape, an activation
   extraction of ``--texts`` alpaca_mmlu texts (resid + heads), and a reward-model training step
   (forward + backward through every weight) on ``--pairs`` pairs. Each child also reports whether
   its GEMM and training gradients came out the same with 1 and 2 threads.
2. ``thread_invariant_backward`` against ATen's softmax backward: each child also times the same
   training step's backward with and without the dispatch mode, side by side (alternating which
   goes first); the medians over all children.

Prints, and writes to bench/results/numerics.json, the medians per mode and their ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# One child: times under the MKL_CBWR its environment holds (genies is imported first, as in a run).
_CHILD = r"""
import contextlib, json, sys, time
import genies  # noqa: F401  (sets MKL_CBWR unless the environment has it)
import os, torch
from genies.data import load_distribution
from genies.models.engine import ForwardEngine
from genies.models.kernels import thread_invariant_backward
from genies.models.loading import load_model
from genies.models.reward import backbone_of, init_head, rewards

model, n_texts, n_pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lm = load_model(model, device="cpu")
d = load_distribution("alpaca_mmlu")
examples = d.train.examples[: max(n_texts, n_pairs)]
texts = [(e.prompt, r) for e in examples for r in e.texts][:n_texts]
tok = lm.tokenizer
seqs = []
for e in examples[:n_pairs]:
    for r in e.texts[:2]:
        seqs.append(tok(e.prompt + r)["input_ids"] + [tok.eos_token_id])
cfg = lm.model.config
a, b = torch.randn(2048, cfg.hidden_size), torch.randn(cfg.hidden_size, cfg.intermediate_size)
backbone = backbone_of(lm.model)
head = init_head(cfg.hidden_size, 0).requires_grad_(True)
for p in backbone.parameters():
    p.requires_grad_(True)

def timed(f):
    t0 = time.perf_counter(); out = f(); return time.perf_counter() - t0, out

def step(softmax_backward="genies"):  # one step's forward + backward: gradients, backward seconds
    backbone.zero_grad(set_to_none=True)
    r = rewards(backbone, head, seqs)
    loss = -torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()
    mode = thread_invariant_backward("cpu") if softmax_backward == "genies" else contextlib.nullcontext()
    t0 = time.perf_counter()
    with mode:
        loss.backward()
    return [p.grad.clone() for p in backbone.parameters()], time.perf_counter() - t0

eng = ForwardEngine(lm)
eng.extract(texts[:4], ("resid",))  # warm-up
out = {"mode": os.environ.get("MKL_CBWR")}
out["gemm_s"], _ = timed(lambda: [a @ b for _ in range(10)])
out["extract_s"], _ = timed(lambda: eng.extract(texts, ("resid", "heads")))
out["train_step_s"], (g2, _) = timed(step)
for name in (["aten", "genies"] if int(sys.argv[4]) % 2 == 0 else ["genies", "aten"]):
    out[f"backward_{name}_s"] = step(name)[1]
torch.set_num_threads(1)
g1, _ = step()
out["train_grads_thread_invariant"] = all(torch.equal(x, y) for x, y in zip(g1, g2))
one = a @ b
torch.set_num_threads(2)
out["gemm_thread_invariant"] = torch.equal(one, a @ b)
out["tokens_per_step"] = sum(len(s) for s in seqs)
print(json.dumps(out))
"""


def _child(mode: str, a: argparse.Namespace, index: int) -> dict:
    import os

    env = {**os.environ, "MKL_CBWR": mode}
    cmd = [sys.executable, "-c", _CHILD, a.model, str(a.texts), str(a.pairs), str(index)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"MKL_CBWR={mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _softmax_backward(children: list[dict]) -> dict:
    """Part 2: each child timed the same backward with ATen's softmax backward and with genies'."""
    med = {k: statistics.median(c[f"backward_{k}_s"] for c in children) for k in ("aten", "genies")}
    return {"backward_s": med, "ratio_genies_over_aten": med["genies"] / med["aten"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=48)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results" / "numerics.json"))
    a = ap.parse_args()
    runs: dict[str, list[dict]] = {"AUTO,STRICT": [], "OFF": []}
    for r in range(a.rounds):
        for mode in ["AUTO,STRICT", "OFF"] if r % 2 == 0 else ["OFF", "AUTO,STRICT"]:
            runs[mode].append(_child(mode, a, r))
            print(mode, runs[mode][-1], flush=True)
    keys = ("gemm_s", "extract_s", "train_step_s")
    med = {m: {k: statistics.median(x[k] for x in v) for k in keys} for m, v in runs.items()}
    report = {
        "model": a.model,
        "texts": a.texts,
        "pairs": a.pairs,
        "rounds": a.rounds,
        "median_s": med,
        "ratio_strict_over_off": {k: med["AUTO,STRICT"][k] / med["OFF"][k] for k in keys},
        "thread_invariant": {
            m: {k: all(x[k] for x in v) for k in ("gemm_thread_invariant", "train_grads_thread_invariant")}
            for m, v in runs.items()
        },
        "softmax_backward": _softmax_backward([x for v in runs.values() for x in v]),
        "runs": runs,
    }
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {k: report[k] for k in ("median_s", "ratio_strict_over_off", "thread_invariant")}, indent=2
        )
    )
    print("softmax backward:", json.dumps(report["softmax_backward"]["backward_s"]),
          f"ratio {report['softmax_backward']['ratio_genies_over_aten']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
