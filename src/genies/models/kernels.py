"""CPU kernels whose results do not depend on the host's thread count.

Where a result can be computed by a process-pool worker with 1 thread or by a 2-thread local run,
both must round the same, or ``--workers 2`` would not reproduce ``--workers 1`` to the bit.

* Attention (forward): PyTorch's fused CPU scaled-dot-product-attention kernel splits its work by
  the number of intra-op threads for some shapes (short query blocks, small heads), so scores came
  out ~1e-6 apart across thread counts. SDPA's math backend is matmul + softmax; it costs about
  10-30% of a CPU forward (measured on SmolLM2, crt_1).
* Matmuls: MKL's GEMM splits long reductions across threads unless its strict reproducibility mode
  is on, which ``genies._numerics`` turns on at import (``MKL_CBWR=AUTO,STRICT``).
* Softmax backward (training): ATen's CPU ``_softmax_backward_data`` rounds differently with 1 and
  2 threads for most attention shapes (measured: (4, 4, 539, 539) and (1, 9, 700, 700) among them);
  a full fine-tune's weights then differed in the 8th digit after two steps.
  :func:`thread_invariant_backward` computes it as ``y * (g - sum(g * y))``, whose elementwise ops
  and last-dim sum do not depend on the threads.

GPU kernels do not depend on the host's threads, so CUDA keeps the fused kernels. Used by the
forward engine (scoring, activations) and the reward models (training and scoring), so every path
that can run in a worker is thread-invariant.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def deterministic_attention(device: Any, *, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """SDPA's math backend while the context is open when ``device`` is a CPU (and ``enabled``);
    otherwise nothing changes. ``device``: a ``torch.device`` or its name (``"cpu"``, ``"cuda:0"``)."""
    if not enabled or not _is_cpu(device):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def _is_cpu(device: Any) -> bool:
    return (getattr(device, "type", None) or str(device).split(":", 1)[0]) == "cpu"


def thread_invariant_backward(device: Any) -> contextlib.AbstractContextManager[Any]:
    """While open, on a CPU ``device``, backward passes run on this thread use a softmax backward
    whose rounding does not depend on the thread count (see the module docstring); elsewhere
    nothing changes. Wrap ``loss.backward()`` in it (a dispatch mode is thread-local, and CPU
    autograd runs the graph on the calling thread)."""
    if not _is_cpu(device):
        return contextlib.nullcontext()
    return _softmax_backward_mode()()


def _softmax_backward(grad: torch.Tensor, output: torch.Tensor, dim: int, input_dtype: Any) -> torch.Tensor:
    """∂L/∂x of y = softmax(x): y ⊙ (g − Σ_dim g ⊙ y), in ``output``'s dtype, then ``input_dtype``."""
    g = grad.to(output.dtype)
    return (output * (g - (g * output).sum(dim, keepdim=True))).to(input_dtype)


@functools.cache
def _softmax_backward_mode() -> type:
    """The dispatch mode class, built on first use (torch is imported lazily)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    target = torch.ops.aten._softmax_backward_data.default

    class SoftmaxBackwardMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            impl = _softmax_backward if func is target else func
            return impl(*args, **(kwargs or {}))

    return SoftmaxBackwardMode
