"""Writing a text one token at a time (`textlstm generate --interactive`): the next token chosen
among the model's most likely ones, or text typed in.

The probabilities offered are those the sampler would draw from: after the repetition penalty,
temperature, top-k and top-p of the options (at temperature 0, the model's own, penalized).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from textlstm.config import SamplingOptions
from textlstm.generation.decoding import DECODE_CONTEXT, TextDecoder
from textlstm.generation.generator import TextGenerator
from textlstm.generation.sampler import TokenSampler, make_rng
from textlstm.tokens import EOT_ID

END_OF_TEXT = "<end of text>"


@dataclass(frozen=True)
class Candidate:
    token: int
    text: str  # the token on its own, decoded
    probability: float


class NextTokenChooser:
    """A text and the LSTM state after it; grows by a chosen token or by typed text."""

    def __init__(self, generator: TextGenerator, prompt: str, options: SamplingOptions):
        self.generator = generator
        self.options = options
        ids = generator.encode(prompt)
        self.stepper = generator.new_stepper(ids)
        # Nothing is drawn at random here: the sampler gives the scores the user chooses from.
        self.sampler = TokenSampler(options, generator.tokenizer.vocab_size, make_rng(0), generator.device)
        self.sampler.mark_seen(ids)
        self.decoder = TextDecoder(generator.tokenizer, ids[-DECODE_CONTEXT:])
        self.text = prompt
        self.ended = False  # end of text was chosen

    def candidates(self, count: int) -> list[Candidate]:
        """The `count` most likely next tokens (fewer if top-k or top-p leave fewer), most likely first."""
        probs = torch.softmax(self.sampler.scores(self.stepper.logits), dim=-1)
        top = torch.topk(probs, min(count, probs.shape[-1]))
        return [
            Candidate(token, self._token_text(token), probability)
            for token, probability in zip(top.indices.tolist(), top.values.tolist())
            if probability > 0
        ]

    def take_token(self, token: int) -> None:
        self.stepper.read([token])
        if token == EOT_ID:
            self.ended = True
            return
        self.sampler.mark_seen([token])
        self.text += self.decoder.push(token)

    def take_text(self, text: str) -> None:
        ids = self.generator.encode(text)
        self.stepper.read(ids)
        self.sampler.mark_seen(ids)
        self.text += self.decoder.flush() + text
        self.decoder = TextDecoder(self.generator.tokenizer, ids[-DECODE_CONTEXT:])

    def finish(self) -> str:
        """The whole text, with any bytes still waiting for the rest of their character."""
        self.text += self.decoder.flush()
        return self.text

    def _token_text(self, token: int) -> str:
        return END_OF_TEXT if token == EOT_ID else self.generator.tokenizer.decode([token])
