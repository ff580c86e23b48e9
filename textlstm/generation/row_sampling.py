"""Token picking for a batch of sequences that each have their own settings and random stream.

`process_logits_batch` is `sampling.process_logits` done for every row at once (each row its own
temperature, top-k, top-p and repetition penalty); `pick_tokens` draws one uniform number per row
from that row's own generator, so a seeded sequence gives the same text whatever else is in the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from textlstm.generation.sampler import SamplingOptions
from textlstm.tokens import PAD_ID


@dataclass
class RowSettings:
    """SamplingOptions of each row as vectors [batch]."""

    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor
    repetition_penalty: torch.Tensor

    @classmethod
    def of(cls, options: list[SamplingOptions], device: torch.device | str = "cpu") -> RowSettings:
        return cls(
            torch.tensor([o.temperature for o in options], dtype=torch.float32, device=device),
            torch.tensor([o.top_k for o in options], dtype=torch.long, device=device),
            torch.tensor([o.top_p for o in options], dtype=torch.float32, device=device),
            torch.tensor([o.repetition_penalty for o in options], dtype=torch.float32, device=device),
        )

    def select(self, rows: torch.Tensor) -> RowSettings:
        return RowSettings(self.temperature[rows], self.top_k[rows], self.top_p[rows], self.repetition_penalty[rows])

    @staticmethod
    def cat(parts: list[RowSettings]) -> RowSettings:
        return RowSettings(*(torch.cat([getattr(p, name) for p in parts]) for name in ("temperature", "top_k", "top_p", "repetition_penalty")))


@torch.inference_mode()
def process_logits_batch(logits: torch.Tensor, settings: RowSettings, seen: torch.Tensor) -> torch.Tensor:
    """Scores [batch, vocab] for logits [batch, vocab]: row i equals
    `process_logits(logits[i], options_i, seen[i])` (a greedy row's scores are its penalized logits)."""
    scores = logits.float().clone()
    penalty = settings.repetition_penalty[:, None]
    if bool((penalty != 1).any()):
        penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
        scores = torch.where(seen & (penalty != 1), penalized, scores)
    scores[:, PAD_ID] = -math.inf
    sampling = settings.temperature > 0
    scores /= torch.where(sampling, settings.temperature, 1.0)[:, None]
    vocab = scores.shape[-1]

    k = settings.top_k
    filtered = sampling & (k > 0) & (k < vocab)
    if bool(filtered.any()):
        largest = int(k[filtered].max())
        top = torch.topk(scores, largest, dim=-1).values
        kth_largest = top.gather(1, (k.clamp(1, largest) - 1)[:, None])
        scores.masked_fill_(filtered[:, None] & (scores < kth_largest), -math.inf)

    filtered = sampling & (settings.top_p < 1)
    if bool(filtered.any()):
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # 0 for the most likely token: it always stays
        drop = filtered[:, None] & (mass_before >= settings.top_p[:, None])
        scores = torch.empty_like(scores).scatter_(1, order, sorted_scores.masked_fill_(drop, -math.inf))
    return scores


@torch.inference_mode()
def pick_tokens(scores: torch.Tensor, greedy: torch.Tensor, rngs: list[torch.Generator]) -> torch.Tensor:
    """One token per row: the argmax for greedy rows, otherwise a draw from softmax(scores) by
    inverse CDF with one uniform number from the row's own generator (greedy rows draw none)."""
    tokens = torch.argmax(scores, dim=-1)
    rows = (~greedy).nonzero().flatten().tolist()
    if not rows:
        return tokens
    probs = torch.softmax(scores[rows], dim=-1)
    cumulative = torch.cumsum(probs, dim=-1)
    uniform = torch.cat([torch.rand(1, generator=rngs[row], device=rngs[row].device) for row in rows]).to(scores.device)
    # right=True: the first token whose cumulative mass exceeds u; a token of probability 0 never is.
    drawn = torch.searchsorted(cumulative, (uniform * cumulative[:, -1])[:, None], right=True).flatten()
    fallback = drawn >= scores.shape[-1]  # u * total rounded up to total: take the most likely
    tokens[rows] = torch.where(fallback, tokens[rows], drawn)
    return tokens
