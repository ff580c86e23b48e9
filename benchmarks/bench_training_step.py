"""Training steps to time: textlstm's own (the Trainer's `_train_step`) and a plain PyTorch baseline.

Both read the same token ids through the same StreamBatcher, carry the LSTM state across batches
(truncated BPTT) and do forward, backward, gradient clipping and AdamW. The baseline is the
pytorch/examples word_language_model step written out: Embedding -> nn.LSTM -> Linear ->
cross-entropy, no dropout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.data.batchers import StreamBatcher
from textlstm.training import distributed
from textlstm.training.trainer import Trainer


@dataclass(frozen=True)
class Shape:
    """A model and batch shape to time."""

    name: str
    vocab: int
    embedding: int
    hidden: int
    layers: int
    batch: int
    seq_len: int
    dropout: float = 0.2
    recurrent_dropout: float = 0.25

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    def flops_per_token(self) -> int:
        """Forward + backward FLOPs of the LSTM and output layer per token: 6 x their weights
        (forward 2 FLOPs per weight, backward twice the forward). The embedding is a lookup."""
        weights = 0
        for layer in range(self.layers):
            inputs = self.embedding if layer == 0 else self.hidden
            weights += 4 * self.hidden * (inputs + self.hidden)
        weights += self.hidden * self.vocab
        return 6 * weights


def textlstm_step(shape: Shape, ids: np.ndarray, precision: str = "float32", seed: int = 0, **model_overrides) -> Callable[[], None]:
    """One call = one step of textlstm's Trainer (its model, optimizer, batcher and `_train_step`)."""
    model = ModelConfig(
        vocab_size=shape.vocab, embedding_size=shape.embedding, hidden_size=shape.hidden, layers=shape.layers,
        dropout=shape.dropout, recurrent_dropout=shape.recurrent_dropout,
    )
    model = ModelConfig(**{**model.__dict__, **model_overrides})
    train = TrainConfig(batch_size=shape.batch, seq_len=shape.seq_len, max_steps=10**9, warmup_steps=0, weight_decay=0.01,
                        seed=seed, device="cpu", precision=precision)
    trainer = Trainer(RunConfig(model=model, data=DataConfig(), train=train), Path("unused-benchmark-output"))
    trainer.tokenizer = SimpleNamespace(vocab_size=shape.vocab)
    trainer.splits = {"train": SimpleNamespace(ids=ids)}
    trainer._build()
    trainer.clock = 0.0
    # What Trainer.run sets up besides _build: the loss function and no weight average (--ema is off).
    trainer.loss_of = distributed.loss_function(trainer.model, trainer.device, model.output_layer == "adaptive", train.ar, train.tar)
    trainer.average = None

    def step() -> None:
        trainer._train_step()
        trainer.step += 1

    return step


class PlainLSTM(nn.Module):
    def __init__(self, shape: Shape):
        super().__init__()
        self.embedding = nn.Embedding(shape.vocab, shape.embedding)
        self.lstm = nn.LSTM(shape.embedding, shape.hidden, shape.layers, batch_first=True)
        self.decoder = nn.Linear(shape.hidden, shape.vocab)

    def forward(self, ids, state):
        output, state = self.lstm(self.embedding(ids), state)
        return self.decoder(output), state


def baseline_step(shape: Shape, ids: np.ndarray, seed: int = 0) -> Callable[[], None]:
    """One call = one step of the plain hand-written baseline, float32."""
    torch.manual_seed(seed)
    model = PlainLSTM(shape).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batcher = StreamBatcher(ids, shape.batch, shape.seq_len)
    carried = {"step": 0, "state": None}

    def step() -> None:
        inputs, targets = batcher.batch(carried["step"] % len(batcher))
        logits, state = model(inputs, carried["state"])
        loss = F.cross_entropy(logits.reshape(-1, shape.vocab), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        carried["state"] = tuple(s.detach() for s in state)
        carried["step"] += 1

    return step


def seconds(step: Callable[[], None], repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats
