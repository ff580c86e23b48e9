"""--ema: an exponential moving average of the weights, kept beside the trained ones.

After every optimizer step each averaged weight moves toward the trained one,
    average = decay * average + (1 - decay) * weight,
with decay min(DECAY, (1 + n) / (10 + n)) at the n-th update (n from 0): early on, when the weights
move fast, a decay of 0.999 would hold on to the random initial weights for thousands of steps.
The trainer evaluates and saves the averaged model; training goes on with the trained weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)  # the averaged weights, float32

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward `model`'s weights (the module itself, not a DDP wrapper)."""
        weight = 1 - self.current_decay()
        for average, trained in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(trained.detach().float(), weight)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"weights": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
