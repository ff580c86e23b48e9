"""The learning rate at each training step: linear warmup, then cosine decay or a constant rate."""

from __future__ import annotations

import math

from textlstm.config import TrainConfig


def learning_rate(step: int, total_steps: int, config: TrainConfig, elapsed_sec: float = 0.0) -> float:
    """The rate for the step about to run (`step` counts the steps done before it).

    Warmup rises linearly to `config.lr` over `warmup_steps`. The cosine then falls to
    `min_lr_ratio * lr` at `total_steps`; with `max_minutes` set it follows the clock as well, and
    whichever limit is nearer drives the decay.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    cosine = 0.5 * (1 + math.cos(math.pi * decay_progress(step, total_steps, config, elapsed_sec)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def decay_progress(step: int, total_steps: int, config: TrainConfig, elapsed_sec: float = 0.0) -> float:
    """How far the cosine has come after warmup, 0 to 1: by steps, or by the clock when that is nearer its end."""
    progress = max(0, step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.max_minutes:
        progress = max(progress, elapsed_sec / (60 * config.max_minutes))
    return min(1.0, progress)


def decay_past_midpoint(step: int, total_steps: int, config: TrainConfig, elapsed_sec: float = 0.0) -> bool:
    """Whether the learning rate has come down far enough for a validation loss that does not improve
    to mean something (early stopping counts only such evaluations): always with a constant rate."""
    return config.schedule == "constant" or decay_progress(step, total_steps, config, elapsed_sec) >= 0.5
