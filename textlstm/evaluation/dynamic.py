"""Dynamic evaluation: the model keeps learning from the text while it scores it (Krause et al. 2018).

    from textlstm.evaluation.dynamic import score_dynamic
    loss_sum, tokens = score_dynamic(model, ids, seq_len=50, lr=0.05, decay=0.001)

The ids are read as one stream, one row, `seq_len` ids per segment. Each segment is first scored
with the weights as they are (so every id is scored exactly once, before any update that saw it);
then the weights take one gradient step on that segment's mean loss and are pulled back toward the
trained weights:

    w <- w - lr * grad + decay * (w_trained - w)

This is plain SGD with a decay toward the trained weights, the simplest of the updates in the
paper (its "SGD with a global prior"; the RMS variant needs gradient statistics from the training
data). The LSTM state is carried from segment to segment, detached. The model's own weights are
restored when scoring ends, so nothing learnt outlives the call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from textlstm.errors import TextlstmError
from textlstm.hardware.precision import autocast
from textlstm.model.network import LSTMLanguageModel, detach_state

DEFAULT_LR = 0.05
DEFAULT_DECAY = 0.001
DEFAULT_SEQ_LEN = 50


def score_dynamic(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    seq_len: int = DEFAULT_SEQ_LEN,
    lr: float = DEFAULT_LR,
    decay: float = DEFAULT_DECAY,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "float32",
) -> tuple[float, int]:
    """Summed loss (nats) and count of the first `max_tokens` scored ids of `ids` (all by default)."""
    loss_sum, tokens = 0.0, 0
    for segment_loss, segment_tokens in segment_losses(model, ids, seq_len, lr, decay, max_tokens, device, precision):
        loss_sum += segment_loss
        tokens += segment_tokens
    return loss_sum, tokens


def segment_losses(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    seq_len: int = DEFAULT_SEQ_LEN,
    lr: float = DEFAULT_LR,
    decay: float = DEFAULT_DECAY,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "float32",
) -> Iterator[tuple[float, int]]:
    """Summed loss (nats) and count of each segment in turn, each scored before the step that learns from it."""
    if not (math.isfinite(lr) and lr >= 0 and 0 <= decay <= 1):
        raise TextlstmError(
            f"dynamic evaluation needs a learning rate >= 0 and a decay from 0 to 1 (got {lr} and {decay})"
        )
    total = max(0, len(ids) - 1)
    if max_tokens is not None:
        total = min(total, max(0, max_tokens))
    params = [param for param in model.parameters() if param.requires_grad]
    trained = [param.detach().clone() for param in params]
    was_training = model.training
    model.eval()  # no dropout: the model scores and learns with the network it will be scored with
    state = model.initial_state(1, device)
    try:
        # Positions are input indices: position i feeds ids[i] and scores ids[i + 1].
        for start in range(0, total, seq_len):
            end = min(start + seq_len, total)
            inputs = torch.from_numpy(np.asarray(ids[start:end], dtype=np.int64)).to(device)[None]
            targets = torch.from_numpy(np.asarray(ids[start + 1 : end + 1], dtype=np.int64)).to(device)[None]
            with torch.enable_grad(), autocast(precision, device):
                loss, count, state = model.loss(inputs, targets, state)
            state = detach_state(state)
            yield float(loss.detach()), int(count)  # scored before the step below
            if lr > 0 and int(count) > 0:
                _step(params, trained, loss / count, lr, decay)
    finally:
        with torch.no_grad():
            for param, original in zip(params, trained):
                param.copy_(original)
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def _step(
    params: list[torch.Tensor], trained: list[torch.Tensor], mean_loss: torch.Tensor, lr: float, decay: float
) -> None:
    grads = torch.autograd.grad(mean_loss, params, allow_unused=True)
    with torch.no_grad():
        for param, grad, original in zip(params, grads, trained):
            if grad is not None:
                param.sub_(grad, alpha=lr)
            if decay:
                param.add_(original - param, alpha=decay)
