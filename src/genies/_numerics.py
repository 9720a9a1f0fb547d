"""Process-wide numerics settings, applied when genies is first imported (before torch computes).

Intel MKL's strict conditional numerical reproducibility (``MKL_CBWR=AUTO,STRICT``): a float32 GEMM
then rounds the same for any intra-op thread count and any number of rows. Without it, MKL splits
the reduction dimension across threads once it reaches ~1,000 (a weight gradient's K is the token
count), so a 1-thread pool worker and a 2-thread local run trained weights that differed in the last
bits, and a row's output could depend on how many rows were batched with it (measured: tests/
test_numerics.py; no cost in GEMM throughput or model time, bench/numerics.py).

MKL reads the variable at its first call, so this module is imported first by ``genies/__init__``
(every ``genies.*`` import runs it). A value already in the environment wins (``MKL_CBWR=OFF`` turns
the mode off); torch builds without MKL (non-x86 CPUs) ignore it, and CUDA kernels never read it.
A program that ran an MKL matmul before importing genies keeps MKL's default: set the variable in
its environment instead.
"""

from __future__ import annotations

import os

MKL_CBWR = "AUTO,STRICT"

os.environ.setdefault("MKL_CBWR", MKL_CBWR)
