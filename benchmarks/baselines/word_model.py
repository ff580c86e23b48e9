"""The network of PyTorch's word_language_model example with its main.py defaults, and scoring a token
stream with it in the example's evaluation batch of 10 columns.

The network (the example's RNNModel with --model LSTM): an embedding of 200, dropout 0.2, a 2-layer
LSTM of 200 with dropout 0.2 between its layers, dropout 0.2, a linear output layer, not tied to the
embedding; the embedding and output weights uniform in +-0.1, the output bias zero, the LSTM's
weights as PyTorch initializes them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

EMBEDDING = HIDDEN = 200
LAYERS = 2
DROPOUT = 0.2
INIT_RANGE = 0.1
BPTT = 35
EVAL_BATCH = 10
IGNORED = -100  # the target of a padded position: cross_entropy's ignore_index


class WordLSTM(nn.Module):
    def __init__(self, vocabulary_size: int):
        super().__init__()
        self.drop = nn.Dropout(DROPOUT)
        self.embedding = nn.Embedding(vocabulary_size, EMBEDDING)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, dropout=DROPOUT)
        self.output = nn.Linear(HIDDEN, vocabulary_size)
        nn.init.uniform_(self.embedding.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.uniform_(self.output.weight, -INIT_RANGE, INIT_RANGE)
        nn.init.zeros_(self.output.bias)

    def forward(self, ids: torch.Tensor, state=None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """ids (time, batch) -> logits (time, batch, vocabulary), the LSTM state after the last step."""
        hidden, state = self.lstm(self.drop(self.embedding(ids)), state)
        return self.output(self.drop(hidden)), state


def columns(ids: list[int], batch: int) -> torch.Tensor:
    """The example's batchify: the stream cut into `batch` equal columns (time, batch), the remainder dropped."""
    length = len(ids) // batch
    return torch.tensor(ids[: length * batch], dtype=torch.long).view(batch, length).t().contiguous()


def scoring_columns(ids: list[int], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (time, batch), in which every one of ids[1:] is a target exactly once.

    The example's evaluation cuts the stream into `batch` columns and predicts each column from its
    second token on, so the first token of each column and the remainder that does not fill a row
    go unscored. Here the targets are cut into `batch` contiguous pieces instead, each column's
    input starting at the token before its first target (the column's state starts at zero, as the
    example's does), and the shorter columns padded at their end with ignored targets."""
    targets = len(ids) - 1
    if targets < 1:
        raise ValueError("a stream to score needs at least two tokens")
    batch = min(batch, targets)
    length = -(-targets // batch)
    inputs = torch.zeros(length, batch, dtype=torch.long)
    wanted = torch.full((length, batch), IGNORED, dtype=torch.long)
    for column in range(batch):
        first, last = column * targets // batch, (column + 1) * targets // batch  # targets ids[first + 1 : last + 1]
        inputs[: last - first, column] = torch.tensor(ids[first:last])
        wanted[: last - first, column] = torch.tensor(ids[first + 1 : last + 1])
    return inputs, wanted


@torch.no_grad()
def stream_nats(model: WordLSTM, ids: list[int], batch: int = EVAL_BATCH) -> float:
    """Total nats of ids[1:], each token predicted from the tokens before it in its column, read in
    steps of BPTT with the state carried (the example's evaluate, every token scored)."""
    model.eval()
    inputs, targets = scoring_columns(ids, batch)
    total, state = 0.0, None
    for start in range(0, inputs.size(0), BPTT):
        logits, state = model(inputs[start : start + BPTT], state)
        chunk = targets[start : start + BPTT]
        total += F.cross_entropy(logits.flatten(0, 1), chunk.flatten(), ignore_index=IGNORED, reduction="sum").item()
    return total
