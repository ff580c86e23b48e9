"""The model's dropouts: FastDropout on activations, recurrent dropout on W_hh, and embedding dropout.

FastDropout is dropout with a cheaper random mask.

On the CPU, `nn.Dropout` draws one random number per element through `bernoulli_`, which costs more
than the multiply: 50-65 ms for a [64, 128, 512] activation on one core, about 5% of a char-model
training step. Here each 32-bit random integer gives two 15-bit uniform draws, so the same mask
costs ~10 ms. The keep probability is rounded to a multiple of 1/32768 and the kept values are
scaled by its exact inverse, so the expectation is unchanged.

Recurrent dropout (Keras's `recurrent_dropout`) masks h(t-1) with one mask fixed over time and
shared by the batch. That equals zeroing (and rescaling) the matching columns of W_hh, so the
fused LSTM kernel runs instead of a Python loop over time steps.

Embedding dropout (AWD-LSTM's) drops whole rows of the embedding matrix: every occurrence of a
token in the batch is zeroed together, so the model cannot lean on one token's vector.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

LEVELS = 1 << 15


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str) -> tuple[torch.Tensor, float]:
    """A boolean mask, True with probability ~1 - p, and the exact keep probability."""
    n = math.prod(shape)
    bits = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()  # uniform in [0, 2^31)
    draws = bits.view(torch.int16)[:n] & (LEVELS - 1)  # both halves, 15 uniform bits each
    threshold = round(p * LEVELS)
    return (draws >= threshold).view(shape), 1 - threshold / LEVELS


class FastDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep, keep_probability = keep_mask(x.shape, self.p, x.device)
        return x * (keep.to(x.dtype) * (1 / keep_probability))


def drop_recurrent_columns(weight_hh: torch.Tensor, p: float) -> torch.Tensor:
    """W_hh [4 * hidden, hidden] with each column (one unit of h(t-1)) dropped with probability p,
    the kept ones scaled by 1 / (1 - p); W_hh itself when p is 0."""
    if p == 0:
        return weight_hh
    mask = torch.empty(weight_hh.shape[1], device=weight_hh.device, dtype=weight_hh.dtype).bernoulli_(1 - p) / (1 - p)
    return weight_hh * mask


def embedding_row_scales(vocab_size: int, p: float, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """One factor per vocabulary row: 0 with probability p, else 1 / (1 - p)."""
    return torch.empty(vocab_size, device=device, dtype=dtype).bernoulli_(1 - p) / (1 - p)
