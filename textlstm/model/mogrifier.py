"""The Mogrifier (Melis, Kočiský & Blunsom, "Mogrifier LSTM", ICLR 2020): before each LSTM cell
update, the input x and the previous hidden state h gate each other in alternating rounds,

    round i odd:   x = 2 * sigmoid(Q_i h) * x
    round i even:  h = 2 * sigmoid(R_i x) * h

and the cell then reads the modulated x and h. Q_i and R_i are full-rank matrices learned per layer,
without biases. With 0 rounds it is the identity, so the model is the plain LSTM.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mogrifier(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, rounds: int):
        super().__init__()
        # Round i (from 1) holds Q_i [input, hidden] when odd, R_i [hidden, input] when even.
        shapes = [(input_size, hidden_size) if i % 2 == 1 else (hidden_size, input_size) for i in range(1, rounds + 1)]
        self.rounds = nn.ParameterList([nn.Parameter(torch.empty(shape)) for shape in shapes])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.LSTM's own initialization, uniform in +-1/sqrt(fan-in): the gates start near 1 (2 * sigmoid(0)),
        # the plain LSTM, with enough spread for each round to learn something different from the others.
        for matrix in self.rounds:
            bound = 1 / math.sqrt(matrix.shape[1])
            nn.init.uniform_(matrix, -bound, bound)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [batch, input] and h [batch, hidden] after the rounds."""
        for i, matrix in enumerate(self.rounds, start=1):
            if i % 2 == 1:
                x = 2 * torch.sigmoid(F.linear(h, matrix)) * x
            else:
                h = 2 * torch.sigmoid(F.linear(x, matrix)) * h
        return x, h
