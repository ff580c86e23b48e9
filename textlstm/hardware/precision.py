"""Numeric precision of the model's matrix work: float32, or bfloat16 through autocast.

Training and evaluation keep float32 weights and run the forward pass under
`torch.autocast(dtype=torch.bfloat16)`; the backward pass runs outside it, and the loss is taken
in float32 (the model casts the logits). Sampling can instead hold the weights in bfloat16.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

from textlstm.errors import TextlstmError

PRECISIONS = ("float32", "bfloat16")


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TextlstmError(f"precision must be {' or '.join(PRECISIONS)}, got {name!r}")
    return name


def training_precision(name: str, device: torch.device | str) -> str:
    """The precision a run trains in: `name`, or for "auto" bfloat16 where the hardware computes it
    natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs that support it) and float32 elsewhere."""
    if name != "auto":
        return check_precision(name)
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bfloat16() else "float32"


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux: read from /proc/cpuinfo; elsewhere: no).
    Without them PyTorch emulates bfloat16, slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def autocast(precision: str, device: torch.device | str):
    """A context that runs the forward pass in `precision` (a no-op for float32)."""
    if check_precision(precision) == "float32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
