"""An output layer in which a char tokenizer's 256 byte-fallback tokens share one output.

A char tokenizer has an id for every character of its training text and, for any other character,
256 byte tokens (<0x00>..<0xFF>, consecutive ids) that spell its UTF-8 bytes. Training text never
holds byte tokens, so a plain softmax over the whole vocabulary spends most of its outputs (256 of
323 for tiny Shakespeare) on tokens that never occur: each step computes them, and their share of
the probability has to be learned away.

Here the softmax has one output per other token plus one "a byte token" output, in the place of
the byte block; which byte is told apart by a second softmax over the 256 bytes, computed only for
the targets that are bytes (none in training) or when the full distribution is asked for:

    log p(byte b) = log p_head(byte output) + log p_bytes(b)

The distribution is exact and covers every id, so unseen text can still be scored and generated.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from textlstm.tokens import BYTE_TOKENS


class ByteFallbackSoftmax(nn.Module):
    def __init__(self, in_features: int, vocab_size: int, first_byte_id: int):
        super().__init__()
        if not 0 <= first_byte_id <= vocab_size - BYTE_TOKENS:
            raise ValueError(
                f"byte tokens {first_byte_id}..{first_byte_id + BYTE_TOKENS - 1} "
                f"do not fit a vocabulary of {vocab_size}"
            )
        self.first_byte_id = first_byte_id
        self.head = nn.Linear(in_features, vocab_size - BYTE_TOKENS + 1)  # the byte output at first_byte_id
        self.bytes = nn.Linear(in_features, BYTE_TOKENS)

    def head_index(self, ids: torch.Tensor) -> torch.Tensor:
        """The head output of each token id: ids before the byte block keep theirs, every byte maps
        to the byte output, ids after the block move down by 255."""
        return ids - (ids - self.first_byte_id).clamp(0, BYTE_TOKENS - 1)

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [..., vocab] of every token id."""
        return log_prob_from_scores(self.head(hidden), self.bytes(hidden), self.first_byte_id)

    def target_log_prob(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) [n] for hidden [n, in_features] and targets [n]; the byte softmax runs on
        the rows whose target is a byte only (the same code path when there are none)."""
        head = F.log_softmax(self.head(hidden).float(), dim=-1)
        log_probs = head.gather(1, self.head_index(targets)[:, None]).squeeze(1)
        byte_ids = targets - self.first_byte_id
        is_byte = (byte_ids >= 0) & (byte_ids < BYTE_TOKENS)
        byte_rows = F.log_softmax(self.bytes(hidden[is_byte]).float(), dim=-1)
        byte_log_probs = byte_rows.gather(1, byte_ids[is_byte][:, None]).squeeze(1)
        return log_probs.masked_scatter(is_byte, log_probs[is_byte] + byte_log_probs)


def log_prob_from_scores(head_scores: torch.Tensor, byte_scores: torch.Tensor, first_byte_id: int) -> torch.Tensor:
    """`ByteFallbackSoftmax.log_prob` from the outputs of its head and bytes layers (the int8 model,
    textlstm/model/quantized.py, computes both in one product)."""
    head = F.log_softmax(head_scores.float(), dim=-1)
    byte_log_probs = head[..., first_byte_id : first_byte_id + 1] + F.log_softmax(byte_scores.float(), dim=-1)
    return torch.cat([head[..., :first_byte_id], byte_log_probs, head[..., first_byte_id + 1 :]], dim=-1)
