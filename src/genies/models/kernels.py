"""Attention kernels whose results do not depend on the host's thread count.

PyTorch's fused CPU scaled-dot-product-attention kernel splits its work by the number of intra-op
threads for some shapes (short query blocks, small heads), so its rounding depends on the thread
count: the same requests scored by a 1-thread process-pool worker and by a 2-thread local run came
out ~1e-6 apart, and ``--workers 2`` would not reproduce ``--workers 1`` to the bit. SDPA's math
backend is matmul + softmax, whose results do not depend on the thread count; it costs about 10-30%
of a CPU forward (measured on SmolLM2, crt_1). GPU kernels do not depend on the host's threads, so
CUDA keeps the fused kernels. Used by the forward engine (scoring, activations) and the reward
models (training and scoring), so every path that can run in a worker is thread-invariant.
"""

from __future__ import annotations

import contextlib
from typing import Any


def deterministic_attention(device: Any, *, enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
    """SDPA's math backend while the context is open when ``device`` is a CPU (and ``enabled``);
    otherwise nothing changes. ``device``: a ``torch.device`` or its name (``"cpu"``, ``"cuda:0"``)."""
    device_type = getattr(device, "type", None) or str(device).split(":", 1)[0]
    if not enabled or device_type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)
