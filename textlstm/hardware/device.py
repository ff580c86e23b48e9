"""Turning a device name from the command line into a torch.device that exists here."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch

from textlstm.errors import TextlstmError


def resolve_device(name: str) -> torch.device:
    """auto (a CUDA GPU if there is one, else the CPU), cpu, cuda, cuda:N or mps."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TextlstmError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TextlstmError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TextlstmError(f"device {name!r} asked for, but there are only {torch.cuda.device_count()} GPUs")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TextlstmError(f"device {name!r} is not available on this machine")
    return device


@functools.cache
def cpu_info() -> str:
    """This machine's /proc/cpuinfo (Linux), or "" where there is none."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def device_name(device: torch.device | str) -> str:
    """What the device is, for the record: a GPU's name, or the CPU's model as /proc/cpuinfo gives it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        for line in cpu_info().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
        return platform.processor() or platform.machine() or "cpu"
    return device.type
