"""The network: Embedding -> masking -> stacked LSTM -> dropout -> Linear (-> softmax in the loss).

Masking: the embedding has a padding index, and when `lengths` are given the LSTM runs on a packed
sequence, so padded steps neither change the recurrent state nor produce outputs; the loss ignores
the padding id.

Recurrent dropout: a dropout mask on h(t-1) that is fixed over time and shared by the batch equals
zeroing (and rescaling) the matching columns of W_hh. Doing that to the weight before the call keeps
PyTorch's fused LSTM kernel instead of a Python loop over time steps.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textlstm.config import ModelConfig
from textlstm.tokenizer import PAD_ID

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [layers, batch, hidden]


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set (it comes from the tokenizer)")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.layers,
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        output_size = config.hidden_size
        self.projection = None
        if config.tie_weights and config.hidden_size != config.embedding_size:
            self.projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            output_size = config.embedding_size
        self.decoder = nn.Linear(output_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
            hidden = self.config.hidden_size
            for name, param in self.lstm.named_parameters():
                if name.startswith("bias_ih"):  # gate order i, f, g, o: start with the forget gate open
                    param[hidden : 2 * hidden].fill_(1.0)
        nn.init.zeros_(self.decoder.bias)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        device = device or self.embedding.weight.device
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits [batch, time, vocab] for ids [batch, time], and the state after the last real step.

        With `lengths` (one per row, on the CPU), steps past each row's length are padding.
        """
        hidden, state = self.hidden_states(ids, state, lengths)
        return self.logits(hidden), state

    def hidden_states(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.initial_state(ids.shape[0], ids.device)
        x = self.dropout(self.embedding(ids))
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, state = self._run_lstm(x, state)
        if lengths is not None:
            x, _ = pad_packed_sequence(x, batch_first=True, padding_value=0.0, total_length=ids.shape[1])
        return self.dropout(x), state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            hidden = self.projection(hidden)
        return self.decoder(hidden)

    def _run_lstm(self, x, state: State):
        p = self.config.recurrent_dropout
        if not (self.training and p > 0):
            return self.lstm(x, state)
        hidden = self.config.hidden_size
        dropped = {}
        for layer in range(self.config.layers):
            name = f"weight_hh_l{layer}"
            weight = getattr(self.lstm, name)
            mask = torch.empty(hidden, device=weight.device, dtype=weight.dtype).bernoulli_(1 - p) / (1 - p)
            dropped[name] = weight * mask
        return functional_call(self.lstm, dropped, (x, state))

    def loss(
        self, ids: torch.Tensor, targets: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Summed cross-entropy (nats) over non-padding targets, their count, and the new state."""
        logits, state = self(ids, state, lengths)
        total = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum"
        )
        count = (targets != PAD_ID).sum()
        return total, count, state

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    return state[0].detach(), state[1].detach()
