"""Thread-invariant CPU numerics: ``genies._numerics`` (MKL's strict mode, set on import) and
``genies.models.kernels.thread_invariant_backward`` (the softmax backward of training).

The MKL cases run in a fresh interpreter, because MKL reads ``MKL_CBWR`` once, at its first call
(this test process has long since multiplied matrices).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(
    not torch.backends.mkl.is_available(), reason="this torch build does not use MKL (MKL_CBWR is MKL's)"
)

# A weight gradient's shape: out [M, N] = grad_outᵀ [M, K] @ inputs [K, N], K = tokens in the batch.
_GEMM = """
import json, sys
import genies  # noqa: F401  (sets MKL_CBWR unless the environment has it)
import os, torch
torch.manual_seed(0)
a, b = torch.randn(64, 4096), torch.randn(4096, 96)
torch.set_num_threads(1); one = a @ b
torch.set_num_threads(2); two = a @ b
rows = all(torch.equal(a[:m] @ b, two[:m]) for m in (1, 3, 17))
print(json.dumps({"mode": os.environ.get("MKL_CBWR"), "threads": torch.equal(one, two), "rows": rows}))
"""

# Two AdamW steps of a full fine-tune on the tiny LLaMA (sequences of 300-700 tokens, so the weight
# gradients' K is ~2,000): the trained weights' hash, with the thread count given.
_TRAIN = """
import hashlib, sys
import genies  # noqa: F401
import torch
from transformers import AutoModelForCausalLM
from genies.models.kernels import thread_invariant_backward
from genies.models.reward import backbone_of, init_head, rewards
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
seqs = [torch.randint(3, 200, (n,)).tolist() for n in (300, 700, 450, 620)]
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
backbone = backbone_of(model)
head = init_head(model.config.hidden_size, 0).requires_grad_(True)
params = [*backbone.parameters(), head]
opt = torch.optim.AdamW(params, lr=1e-3)
for _ in range(2):
    opt.zero_grad()
    r = rewards(backbone, head, seqs)
    with thread_invariant_backward("cpu"):
        (-torch.nn.functional.logsigmoid(r[0::2] - r[1::2]).mean()).backward()
    opt.step()
h = hashlib.sha256()
for p in params:
    h.update(p.detach().numpy().tobytes())
print(h.hexdigest())
"""


def _python(code: str, *args: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env={**base, **env}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _intel_cpu() -> bool:
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_importing_genies_makes_gemm_thread_and_row_invariant():
    got = json.loads(_python(_GEMM))
    assert got["mode"] == "AUTO,STRICT" and got["threads"] is True
    # MKL's strict mode (row-count invariance) exists on Intel CPUs only (Intel's CNR docs); on
    # others MKL falls back to plain CNR (fixed threads/reductions), which is what "threads" checks
    if _intel_cpu():
        assert got["rows"] is True
    else:
        print("non-Intel CPU: MKL strict mode (row-count invariance) is Intel-only; rows =", got["rows"])


def test_a_users_mkl_cbwr_wins():
    got = json.loads(_python(_GEMM, MKL_CBWR="OFF"))
    assert got["mode"] == "OFF"
    # MKL's default splits K = 4096 across 2 threads on x86 CPUs measured so far; where it does not,
    # this half says nothing, but the setting above still must not have been overridden.
    print(f"MKL_CBWR=OFF: thread-invariant {got['threads']}, row-invariant {got['rows']}")


def test_full_fine_tune_weights_do_not_depend_on_the_thread_count(tiny_model_dir):
    """The CI failure this fixes: `--workers 2` (1 thread per worker) vs local (2 threads)."""
    one = _python(_TRAIN, str(tiny_model_dir), "1")
    two = _python(_TRAIN, str(tiny_model_dir), "2")
    assert one == two


@pytest.mark.parametrize("shape", [(4, 4, 539, 539), (1, 9, 300, 700), (2, 3, 1, 1000), (8, 2, 64, 64)])
def test_softmax_backward_is_the_gradient_and_thread_invariant(shape):
    from genies.models.kernels import thread_invariant_backward

    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape, dtype=torch.float64)
    exact = torch.autograd.grad(torch.softmax(x, -1), x, g)[0]  # float64 reference
    x32, g32 = x.detach().float().requires_grad_(True), g.float()
    grads = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            with thread_invariant_backward("cpu"):
                grads.append(torch.autograd.grad(torch.softmax(x32, -1), x32, g32)[0])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(grads[0], grads[1])
    assert torch.allclose(grads[0].double(), exact, atol=1e-6, rtol=1e-4)


def test_thread_invariant_backward_leaves_other_devices_alone():
    import contextlib

    from genies.models.kernels import thread_invariant_backward

    assert isinstance(thread_invariant_backward("cuda:0"), contextlib.nullcontext)
    assert not isinstance(thread_invariant_backward(torch.device("cpu")), contextlib.nullcontext)
