"""Time several contenders in alternation (A B C A B C ...) and keep the medians, so that load from
other processes on the machine hits every contender alike."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from benchmarks.speed.training_step import seconds


def interleaved_medians(contenders: dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each contender over `rounds` alternating rounds."""
    for _ in range(warmup):
        for step in contenders.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, step in contenders.items():
            times[name].append(seconds(step))
    return {name: statistics.median(values) for name, values in times.items()}
