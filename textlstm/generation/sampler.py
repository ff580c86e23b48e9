"""The one token sampler: `textlstm generate`, `chat`, `generate --interactive` and the server pick
tokens with these functions.

It works on a batch whose rows each have their own settings and their own random generator:

    logits -> repetition penalty -> temperature -> top-k -> top-p -> scores      (filtered_scores)
    scores -> argmax at temperature 0, else one uniform number from the row's    (pick_tokens)
              own generator, by inverse CDF
    logits -> log-probability of each chosen token and of the most likely ones   (token_logprobs)

A row draws one number per sampled token and nothing else, so a seeded row gives the same tokens
whatever else is in the batch: a text sampled alone (`TokenSampler`, a batch of one) is the text the
server samples for the same request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from textlstm.config import SamplingOptions
from textlstm.tokens import EOT_ID, PAD_ID


def make_rng(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private random generator: seeded for reproducible text, from the OS otherwise."""
    rng = torch.Generator(device=device)
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(seed)
    return rng


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

    @property
    def greedy(self) -> torch.Tensor:
        return self.temperature == 0

    def select(self, rows: torch.Tensor) -> RowSettings:
        return RowSettings(self.temperature[rows], self.top_k[rows], self.top_p[rows], self.repetition_penalty[rows])

    @staticmethod
    def cat(parts: list[RowSettings]) -> RowSettings:
        names = ("temperature", "top_k", "top_p", "repetition_penalty")
        return RowSettings(*(torch.cat([getattr(part, name) for part in parts]) for name in names))


@torch.inference_mode()
def filtered_scores(logits: torch.Tensor, settings: RowSettings, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Scores [batch, vocab] to sample from: logits [batch, vocab] after each row's repetition penalty
    (on the tokens `seen` [batch, vocab] marks), temperature, top-k and top-p; removed tokens are -inf.

    A greedy row (temperature 0) gets only the penalty: its argmax is the token. Padding is never picked.
    """
    scores = logits.float().clone()
    penalty = settings.repetition_penalty[:, None]
    if seen is not None and bool((penalty != 1).any()):
        penalized = torch.where(scores > 0, scores / penalty, scores * penalty)
        scores = torch.where(seen & (penalty != 1), penalized, scores)
    scores[:, PAD_ID] = -math.inf
    sampling = ~settings.greedy
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
        drop = filtered[:, None] & (mass_before >= settings.top_p[:, None])  # the token crossing top_p stays
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


@dataclass
class TokenLogprobs:
    """The model's log-probabilities (natural log, float32, before any sampling setting) of the
    chosen tokens [batch] and of each row's `top` most likely tokens [batch, top], most likely first."""

    chosen: torch.Tensor
    top_ids: torch.Tensor
    top_logprobs: torch.Tensor


@torch.inference_mode()
def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, top: int = 0) -> TokenLogprobs:
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    chosen = logprobs.gather(1, tokens.to(logprobs.device)[:, None]).flatten()
    best = torch.topk(logprobs, min(top, logprobs.shape[-1]), dim=-1)
    return TokenLogprobs(chosen, best.indices, best.values)


class TokenSampler:
    """The sampler of one text (a batch of one): its settings, its random stream and the tokens
    it already holds, for the repetition penalty."""

    def __init__(
        self, options: SamplingOptions, vocab_size: int, rng: torch.Generator, device: torch.device | str = "cpu"
    ):
        self.options = options
        self.rng = rng
        self.settings = RowSettings.of([options], device)
        self.seen = torch.zeros(1, vocab_size, dtype=torch.bool, device=device)

    def mark_seen(self, ids: Iterable[int]) -> None:
        ids = [i for i in ids if i != EOT_ID]
        if ids:
            self.seen[0, torch.tensor(ids, device=self.seen.device)] = True

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the next token is drawn from, [vocab], for the logits [vocab] of the model."""
        return filtered_scores(logits[None], self.settings, self.seen)[0]

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor) -> int:
        scores = filtered_scores(logits[None], self.settings, self.seen)
        token = int(pick_tokens(scores, self.settings.greedy, [self.rng])[0])
        if token != EOT_ID:
            self.seen[0, token] = True
        return token
