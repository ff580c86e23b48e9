"""Numeric precision of the model's matrix work: float32, or bfloat16 or float16 through autocast.

Training and evaluation keep float32 weights and run the forward pass under `torch.autocast`; the
backward pass runs outside it, and the loss is taken in float32 (the model casts the logits).
float16's narrow range needs the loss scaled in training (textlstm/training/loss_scaling.py).
Sampling can instead hold the weights in bfloat16 or float16.
"""

from __future__ import annotations

import contextlib
import functools
import re

import torch

from textlstm.errors import TextlstmError
from textlstm.hardware.device import cpu_info

PRECISIONS = ("float32", "bfloat16", "float16")


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TextlstmError(f"precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {name!r}")
    return name


def training_precision(name: str, device: torch.device | str) -> str:
    """The precision a run trains in: `name`, or for "auto" bfloat16 where the hardware computes it
    natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs from Ampere on), float16 on older CUDA GPUs,
    and float32 elsewhere. Every command's --precision auto is this rule (eval, generate, chat, serve)."""
    if name != "auto":
        return check_precision(name)
    device = torch.device(device)
    if device.type == "cuda":
        return "bfloat16" if cuda_has_native_bfloat16(device) else "float16"
    return "bfloat16" if device.type == "cpu" and cpu_has_native_bfloat16() else "float32"


@functools.cache
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (Linux: read from /proc/cpuinfo; elsewhere: no).
    Without them PyTorch emulates bfloat16, slower than float32."""
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", cpu_info()) is not None


def cuda_has_native_bfloat16(device: torch.device | str) -> bool:
    """Whether this CUDA GPU computes bfloat16 natively: compute capability 8 (Ampere) or later, or
    ROCm. torch.cuda.is_bf16_supported() also says yes where bfloat16 is only emulated (slowly)."""
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


def autocast(precision: str, device: torch.device | str):
    """A context that runs the forward pass in `precision` (a no-op for float32)."""
    if check_precision(precision) == "float32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    context = torch.autocast(device_type=device_type, dtype=getattr(torch, precision))
    if device_type == "cpu" and (precision == "float16" or not cpu_has_native_bfloat16()):
        return _without_onednn(context)
    return context


@contextlib.contextmanager
def _without_onednn(context):
    """`context` with oneDNN off: its CPU LSTM has no float16 kernel, nor a bfloat16 one on a CPU
    without bfloat16 instructions ("could not create a primitive descriptor"); torch's own LSTM runs
    instead. These precisions on such a CPU are for testing, not speed: auto picks float32 there."""
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        with context:
            yield
    finally:
        torch.backends.mkldnn.enabled = enabled
