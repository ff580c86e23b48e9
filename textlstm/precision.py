"""Numeric precision of the model's matrix work: float32, or bfloat16 through autocast.

Training and evaluation keep float32 weights and run the forward pass under
`torch.autocast(dtype=torch.bfloat16)`; the backward pass runs outside it, and the loss is taken
in float32 (the model casts the logits). Sampling can instead hold the weights in bfloat16.
"""

from __future__ import annotations

import contextlib

import torch

from textlstm.errors import TextlstmError

PRECISIONS = ("float32", "bfloat16")


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TextlstmError(f"precision must be {' or '.join(PRECISIONS)}, got {name!r}")
    return name


def autocast(precision: str, device: torch.device | str):
    """A context that runs the forward pass in `precision` (a no-op for float32)."""
    if check_precision(precision) == "float32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
