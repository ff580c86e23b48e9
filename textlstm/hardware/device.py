"""Turning a device name from the command line into a torch.device that exists here."""

from __future__ import annotations

import platform

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


def device_name(device: torch.device | str) -> str:
    """What the device is, for the record: a GPU's name, or the CPU's model as /proc/cpuinfo gives it."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
                for line in info:
                    if line.startswith("model name"):
                        return line.partition(":")[2].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "cpu"
    return device.type
