"""Perplexity and bits per character/byte of a tokenized split, scored as one stream.

The ids are `EOT text ... EOT`; every id after the first is scored exactly once, the first one
conditioned on the start state. To use a batch, the stream is cut into `batch_size` parts that are
scored side by side; each part after the first is preceded by a burn-in: the `burn_in` ids before
it are run through the LSTM (not scored) so its state carries the text's recent context, as it
would if the whole stream were scored in one row. With a burn-in much longer than the model's
memory, the result does not depend on the batch size.

Per-token figures depend on the tokenizer; bits per character and per byte of the same text do not,
so they compare char, word and BPE models.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from textlstm.data import SplitInfo
from textlstm.model import LSTMLanguageModel
from textlstm.tokenizer import PAD_ID

LN2 = math.log(2)


@dataclass
class EvalResult:
    loss_sum: float  # nats, summed over scored tokens
    tokens: int
    chars: int | None  # None when only part of the split was scored
    bytes: int | None
    seconds: float

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.tokens, 1)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_token(self) -> float:
        return self.loss / LN2

    @property
    def bits_per_char(self) -> float | None:
        return self.loss_sum / LN2 / self.chars if self.chars else None

    @property
    def bits_per_byte(self) -> float | None:
        return self.loss_sum / LN2 / self.bytes if self.bytes else None

    def as_dict(self) -> dict:
        record = asdict(self)
        for name in ("loss", "perplexity", "bits_per_token", "bits_per_char", "bits_per_byte"):
            record[name] = getattr(self, name)
        return record


@torch.inference_mode()
def score_stream(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    batch_size: int = 32,
    seq_len: int = 256,
    max_tokens: int | None = None,
    burn_in: int = 512,
    device: torch.device | str = "cpu",
) -> tuple[float, int]:
    """Summed loss (nats) and count of the first `max_tokens` scored ids of `ids` (all by default)."""
    was_training = model.training
    model.eval()
    try:
        total = len(ids) - 1 if max_tokens is None else min(len(ids) - 1, max_tokens)
        if total <= 0:
            return 0.0, 0
        parts = max(1, min(batch_size, total))
        part_len = -(-total // parts)
        starts = [p * part_len for p in range(parts) if p * part_len < total]
        state = _burned_in_state(model, ids, starts, burn_in, device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for offset in range(0, part_len, seq_len):
            inputs, targets = _columns(ids, starts, offset, min(seq_len, part_len - offset), total)
            loss, _, state = model.loss(inputs.to(device), targets.to(device), state)
            loss_sum += loss.double()
        return float(loss_sum), total
    finally:
        model.train(was_training)


def _columns(ids: np.ndarray, starts: list[int], offset: int, width: int, total: int):
    """Inputs and targets [parts, width]: ids at starts+offset... and the ids after them; padding past `total`."""
    block = np.full((len(starts), width + 1), PAD_ID, dtype=np.int64)
    for row, start in enumerate(starts):
        begin = start + offset
        end = min(begin + width, total)  # last scored target index (exclusive), in target positions
        if end > begin:
            block[row, : end - begin + 1] = ids[begin : end + 1]
    inputs = torch.from_numpy(block[:, :-1].copy())
    targets = torch.from_numpy(block[:, 1:].copy())
    # a target past the end of the scored range is padding; its input may be a real id, harmless
    for row, start in enumerate(starts):
        real = max(0, min(width, total - (start + offset)))
        targets[row, real:] = PAD_ID
    return inputs, targets


def _burned_in_state(model, ids, starts, burn_in, device):
    state = model.initial_state(len(starts), device)
    rows = [r for r, start in enumerate(starts) if start > 0 and burn_in > 0]
    if not rows:
        return state
    lengths = [min(burn_in, starts[r]) for r in rows]
    width = max(lengths)
    block = np.full((len(rows), width), PAD_ID, dtype=np.int64)
    for i, (r, length) in enumerate(zip(rows, lengths)):
        block[i, :length] = ids[starts[r] - length : starts[r]]
    _, (h, c) = model(torch.from_numpy(block).to(device), lengths=torch.tensor(lengths))
    index = torch.tensor(rows, device=device)
    state[0][:, index] = h
    state[1][:, index] = c
    return state


def evaluate_split(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    info: SplitInfo | None = None,
    batch_size: int = 32,
    seq_len: int = 256,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
) -> EvalResult:
    """Score a split; characters and bytes are reported when the whole split is scored."""
    start = time.perf_counter()
    loss_sum, tokens = score_stream(model, ids, batch_size, seq_len, max_tokens, device=device)
    whole = info is not None and tokens == info.scored_tokens
    return EvalResult(
        loss_sum=loss_sum,
        tokens=tokens,
        chars=info.chars if whole else None,
        bytes=info.bytes if whole else None,
        seconds=time.perf_counter() - start,
    )
