"""Logits processing and the generation loop.

The prompt is read by the LSTM in one forward pass; every new token then costs one step from the
carried (h, c), so the cost per token does not grow with the length of the text.

    logits -> repetition penalty -> temperature -> top-k -> top-p -> token
    token ids -> streamed UTF-8 text -> cut at the first stop string
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from tokenizers.decoders import DecodeStream

from textlstm.config import SamplingOptions
from textlstm.model.network import LSTMLanguageModel, State
from textlstm.data.tokenizer import TextTokenizer
from textlstm.tokens import EOT_ID, PAD_ID


def make_rng(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A private random generator: seeded for reproducible text, from the OS otherwise."""
    rng = torch.Generator(device=device)
    if seed is None:
        rng.seed()
    else:
        rng.manual_seed(seed)
    return rng


def process_logits(logits: torch.Tensor, options: SamplingOptions, seen: torch.Tensor | None = None) -> torch.Tensor:
    """Logits [vocab] after the repetition penalty, temperature, top-k and top-p; removed tokens are -inf.

    `seen` is a boolean mask [vocab] of the tokens already in the text. With temperature 0 only the
    penalty applies (the caller takes the argmax). The padding token is always removed.
    """
    logits = logits.float().clone()
    if seen is not None and options.repetition_penalty != 1.0:
        penalized = torch.where(logits > 0, logits / options.repetition_penalty, logits * options.repetition_penalty)
        logits = torch.where(seen, penalized, logits)
    logits[PAD_ID] = -math.inf
    if options.temperature == 0:
        return logits
    logits /= options.temperature
    if 0 < options.top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, options.top_k).values[-1]
        logits.masked_fill_(logits < kth_largest, -math.inf)
    if options.top_p < 1.0:
        logits = _keep_nucleus(logits, options.top_p)
    return logits


def _keep_nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities add up to at least top_p."""
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # 0 for the most likely token: it always stays
    sorted_logits.masked_fill_(mass_before >= top_p, -math.inf)  # the token that crosses top_p stays
    return logits.scatter_(0, order, sorted_logits)


class TokenSampler:
    """Picks the next token from logits, remembering which tokens the text already holds."""

    def __init__(self, options: SamplingOptions, vocab_size: int, rng: torch.Generator, device: torch.device | str = "cpu"):
        self.options = options
        self.rng = rng
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)

    def mark_seen(self, ids: Iterable[int]) -> None:
        ids = [i for i in ids if i != EOT_ID]
        if ids:
            self.seen[torch.tensor(ids, device=self.seen.device)] = True

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor) -> int:
        scores = process_logits(logits, self.options, self.seen)
        if self.options.temperature == 0:
            token = int(torch.argmax(scores))
        else:
            probs = torch.softmax(scores, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=self.rng))
        if self.options.repetition_penalty != 1.0:
            self.seen[token] = True
        return token


PROMPT_CHUNK = 4096  # prompt ids read per forward pass


class LSTMStepper:
    """The model with its carried (h, c) and the logits for the next token.

    Several ids are read in one forward pass of the model; a single id, the per-token hot path,
    in one `model.step`.

    On the CPU it runs on one thread: at batch 1 the matrices are too small to share, and with a
    second thread every op waits for it (measured 10-20x slower on a busy 2-core machine).
    """

    def __init__(self, model: LSTMLanguageModel, state: State | None = None):
        self.model = model
        self.state = state
        self.logits: torch.Tensor | None = None  # [vocab], for the token after the last one read
        self._device = model.embedding.weight.device

    @torch.inference_mode()
    def read(self, ids: list[int]) -> None:
        """Advance over `ids`: all of them in one forward pass, or one step for a single id."""
        if not ids:
            return
        with _one_cpu_thread(self._device.type == "cpu"):
            if len(ids) == 1 and self.state is not None:
                logits, self.state = self.model.step(torch.tensor(ids, device=self._device), self.state)
                self.logits = logits[0]
                return
            for start in range(0, len(ids), PROMPT_CHUNK):  # bounded memory for very long prompts
                batch = torch.tensor([ids[start : start + PROMPT_CHUNK]], dtype=torch.long, device=self._device)
                hidden, self.state = self.model.hidden_states(batch, self.state)
            self.logits = self.model.logits(hidden[0, -1])


@contextmanager
def _one_cpu_thread(active: bool):
    previous = torch.get_num_threads()
    if not active or previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def sample_tokens(stepper: LSTMStepper, sampler: TokenSampler, max_tokens: int) -> Iterator[int]:
    """Sample up to max_tokens ids, feeding each back to the model; stops after end of text.

    Every sampled token, end of text included, is read by the stepper, so its state afterwards
    covers the whole text (a chat continues from there). End of text is not yielded.
    """
    if stepper.logits is None:
        raise ValueError("the stepper has read nothing yet: give it a prompt (or the end-of-text token) first")
    for _ in range(max_tokens):
        token = sampler(stepper.logits)
        stepper.read([token])
        if token == EOT_ID:
            return
        yield token


class TextDecoder:
    """Token ids to text pieces; bytes of a character split over several tokens wait until it is whole."""

    def __init__(self, tokenizer: TextTokenizer, context: list[int] | None = None):
        self.tokenizer = tokenizer
        # Earlier ids let decoders that depend on neighbours (spaces, word boundaries) decode correctly.
        self._stream = DecodeStream(ids=context or None, skip_special_tokens=False)
        self._held: list[int] = []

    def push(self, token: int) -> str:
        try:
            piece = self._stream.step(self.tokenizer.hf, token)
        except Exception:  # DecodeStream gives up on some runs of invalid UTF-8: decode them plainly
            self._stream = DecodeStream(skip_special_tokens=False)
            piece = self.tokenizer.decode([*self._held, token])
        if piece is None:
            self._held.append(token)
            return ""
        self._held.clear()
        return piece

    def flush(self) -> str:
        """Whatever is still held at the end (an incomplete character decodes as U+FFFD)."""
        text = self.tokenizer.decode(self._held) if self._held else ""
        self._held.clear()
        return text


class StopStringFilter:
    """Passes text through until the first stop string; holds back text that may start one."""

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(stops)
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            text, self.pending = self.pending[:cut], ""
            return text
        keep = self._longest_stop_prefix_suffix()
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return text

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest end of `pending` that is the beginning of some stop string."""
        for length in range(min(len(self.pending), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
            tail = self.pending[-length:]
            if any(s.startswith(tail) for s in self.stops):
                return length
        return 0


def stream_text(tokens: Iterable[int], decoder: TextDecoder, stops: Iterable[str] = ()) -> Iterator[str]:
    """Text pieces of `tokens` as they arrive, ending before the first stop string."""
    stop_filter = StopStringFilter(stops)
    for token in tokens:
        text = stop_filter.push(decoder.push(token))
        if text:
            yield text
        if stop_filter.stopped:
            return
    text = stop_filter.push(decoder.flush())
    if not stop_filter.stopped:
        text += stop_filter.flush()
    if text:
        yield text
