"""Training loss and throughput: since the last evaluation, and over the last few steps."""

from __future__ import annotations

RECENT_STEPS = 20  # the progress display's tokens/s is over this many steps


class Meter:
    def __init__(self):
        self.reset()
        self.recent: list[tuple[int, float]] = []

    def reset(self) -> None:
        """Start a new evaluation window (the recent steps are kept)."""
        self.loss_sum, self.tokens, self.seconds = 0.0, 0, 0.0

    def add(self, loss_sum: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss_sum
        self.tokens += tokens
        self.seconds += seconds
        self.recent = (self.recent + [(tokens, seconds)])[-RECENT_STEPS:]

    def mean_loss(self) -> float | None:
        return self.loss_sum / self.tokens if self.tokens else None

    def rate(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None

    def recent_rate(self) -> float:
        seconds = sum(s for _, s in self.recent)
        return sum(t for t, _ in self.recent) / seconds if seconds else 0.0
