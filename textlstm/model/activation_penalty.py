"""AR and TAR (Merity et al. 2017, AWD-LSTM): penalties on the last LSTM layer's outputs that
training adds to the loss it backpropagates (the reported loss stays the cross-entropy).

AR, alpha * mean(h_t^2) of the outputs after dropout, keeps the activations small; TAR,
beta * mean((h_t - h_{t-1})^2) of the outputs before dropout, keeps them from jumping between
steps. The means run over the hidden units of real steps (padding left out), TAR's over the
pairs of adjacent real steps.
"""

from __future__ import annotations

import torch


def activation_penalty(
    outputs: torch.Tensor, dropped: torch.Tensor, lengths: torch.Tensor | None, ar: float, tar: float
) -> torch.Tensor:
    """outputs, dropped: [batch, time, hidden] before and after dropout; lengths: the real steps of
    each row (a prefix of it), None when every step is real. A float32 scalar."""
    batch, steps, _ = outputs.shape
    if lengths is None:
        real = torch.ones(batch, steps, dtype=torch.bool, device=outputs.device)
    else:
        real = torch.arange(steps, device=outputs.device) < lengths.to(outputs.device)[:, None]
    penalty = torch.zeros((), device=outputs.device)
    if ar:
        penalty = penalty + ar * _mean_over(dropped.float().pow(2), real)
    if tar:
        outputs = outputs.float()
        penalty = penalty + tar * _mean_over((outputs[:, 1:] - outputs[:, :-1]).pow(2), real[:, 1:])
    return penalty


def _mean_over(values: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The mean of values [batch, time, hidden] over the steps where real [batch, time] is True."""
    return (values * real[..., None]).sum() / (real.sum() * values.shape[-1]).clamp(min=1)
