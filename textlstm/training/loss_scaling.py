"""Loss scaling for float16 training, a pass-through in float32 and bfloat16.

float16 gradients below ~6e-8 round to zero. So the loss is multiplied by a scale (2**16 to start)
before the backward pass and the gradients divided by it before clipping and the optimizer step
(torch.amp.GradScaler). A step whose gradients overflowed to inf or NaN is skipped and the scale
halved; after 2,000 steps without one it doubles. bfloat16 has float32's range and needs none.
"""

from __future__ import annotations

import torch


class LossScaler:
    def __init__(self, precision: str, device: torch.device):
        self.scaler = torch.amp.GradScaler(device.type) if precision == "float16" else None

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by the scale, so that clipping reads their true size."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """optimizer.step(); False when it was skipped, the gradients having overflowed."""
        if self.scaler is None:
            optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale  # update() lowers the scale only after an overflow

    def state_dict(self) -> dict:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict | None) -> None:
        """Go on from a saved scale; none saved (a run trained in another precision until now): start afresh."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
