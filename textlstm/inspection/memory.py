"""How long a model's cells remember, from their forget gates.

A cell whose forget gate holds f at every step keeps a fraction f^t of what it held t steps ago,
which falls by e every 1 / (1 - f) steps for f near 1: its time constant. Here f is each cell's mean
forget gate over the recorded text, and the summary is the share of cells (per layer) whose time
constant is over 10, 100 and 1,000 steps (tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from textlstm.inspection.recorder import Recording

SPANS = (10, 100, 1000)
LONGEST = 1e7  # the time constant of a forget gate whose mean rounds to 1 in float32


@dataclass
class Memory:
    time_constants: np.ndarray  # [layers, cells], in steps

    def share_over(self, steps: float) -> np.ndarray:
        """[layers]: the share of each layer's cells whose time constant is over `steps`."""
        return (self.time_constants > steps).mean(axis=1)

    def as_dicts(self) -> list[dict]:
        return [
            {
                "layer": layer,
                "median_steps": float(np.median(constants)),
                **{f"share_over_{steps}": float((constants > steps).mean()) for steps in SPANS},
            }
            for layer, constants in enumerate(self.time_constants)
        ]


def memory(recording: Recording) -> Memory:
    mean_forget = recording.forget_gate.astype(np.float64).mean(axis=1)
    return Memory(np.minimum(1.0 / np.maximum(1.0 - mean_forget, 1.0 / LONGEST), LONGEST))
