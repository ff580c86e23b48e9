"""The machine's own matrix-multiply peak: GFLOP/s of a large square product, float32 and bfloat16.

torch has two GEMM back ends on the CPU (MKL/BLAS behind torch.mm, oneDNN behind convolutions and
the LSTM kernel), and on some CPUs one is much faster than the other; the peak is the faster one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

SIZE = 2048


def matmul_calls(dtype: torch.dtype, size: int = SIZE) -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (a call doing a size x size x size product, its FLOPs), one per back end."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    x = a.unsqueeze(0)  # [1, channels, length]: a 1x1 convolution is the same product, through oneDNN
    w = b.unsqueeze(2)
    flops = 2 * size**3
    return {"mm": (lambda: torch.mm(a, b), flops), "onednn": (lambda: F.conv1d(x, w), flops)}
