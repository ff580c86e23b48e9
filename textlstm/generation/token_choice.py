"""`textlstm generate --interactive`: write a text one token at a time, choosing each next token
among the model's most likely ones, or typing text of your own.

The probabilities shown are those the sampler would draw from: after the repetition penalty,
temperature, top-k and top-p of the options (at temperature 0, the model's own, penalized).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

import torch

from textlstm.generation.generator import TextGenerator
from textlstm.config import SamplingOptions
from textlstm.generation.sampler import TextDecoder, process_logits
from textlstm.tokens import EOT_ID

SHOWN_TAIL = 60  # characters of the text so far shown above the choices
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
        self.seen = torch.zeros(generator.tokenizer.vocab_size, dtype=torch.bool, device=generator.device)
        self._mark_seen(ids)
        self.decoder = TextDecoder(generator.tokenizer, ids[-4:])
        self.text = prompt
        self.ended = False  # end of text was chosen

    def candidates(self, count: int) -> list[Candidate]:
        """The `count` most likely next tokens (fewer if top-k or top-p leave fewer), most likely first."""
        probs = torch.softmax(process_logits(self.stepper.logits, self.options, self.seen), dim=-1)
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
        self._mark_seen([token])
        self.text += self.decoder.push(token)

    def take_text(self, text: str) -> None:
        ids = self.generator.encode(text)
        self.stepper.read(ids)
        self._mark_seen(ids)
        self.text += self.decoder.flush() + text
        self.decoder = TextDecoder(self.generator.tokenizer, ids[-4:])

    def finish(self) -> str:
        """The whole text, with any bytes still waiting for the rest of their character."""
        self.text += self.decoder.flush()
        return self.text

    def _token_text(self, token: int) -> str:
        return END_OF_TEXT if token == EOT_ID else self.generator.tokenizer.decode([token])

    def _mark_seen(self, ids: list[int]) -> None:
        ids = [i for i in ids if i != EOT_ID]
        if ids:
            self.seen[torch.tensor(ids, device=self.seen.device)] = True


class ChooserLoop:
    """Shows the choices, reads one line per step: a number picks that token, Enter picks the most
    likely one, a line starting with a backslash is text without it, any other line is text.
    The end of input (Ctrl-D), Ctrl-C or choosing end of text finishes; the text goes to `out`.
    """

    def __init__(self, chooser: NextTokenChooser, count: int, interactive: bool, out: TextIO | None = None,
                 messages: TextIO | None = None):
        self.chooser = chooser
        self.count = count
        self.interactive = interactive
        self.out = out or sys.stdout
        # Piped: stdout carries the finished text only.
        self.messages = messages or (self.out if interactive else sys.stderr)

    def run(self) -> None:
        try:
            while not self.chooser.ended:
                shown = self.chooser.candidates(self.count)
                self.show(shown)
                line = self.read_line(f"1-{len(shown)} (Enter: 1), or text> ")
                if line is None:
                    break
                self.act(line, shown)
        except KeyboardInterrupt:
            self.messages.write("\n")
        self.out.write(_ending_its_line(self.chooser.finish()))
        self.out.flush()

    def act(self, line: str, shown: list[Candidate]) -> None:
        if line == "" or line.isdigit():
            number = int(line or 1)
            if 1 <= number <= len(shown):
                self.chooser.take_token(shown[number - 1].token)
            else:
                self.say(f"choose 1 to {len(shown)}; to type a number as text, start the line with \\")
        else:
            self.chooser.take_text(line[1:] if line.startswith("\\") else line)

    def show(self, shown: list[Candidate]) -> None:
        text = self.chooser.text
        tail = text if len(text) <= SHOWN_TAIL else "…" + text[-SHOWN_TAIL:]
        lines = [f"text: {tail!r}"]
        lines += [f"{number:>4}  {candidate.probability:6.1%}  {_shown_token(candidate.text)}"
                  for number, candidate in enumerate(shown, 1)]
        self.say("\n".join(lines))

    def read_line(self, prompt: str) -> str | None:
        if not self.interactive:
            line = sys.stdin.readline()
            return line.rstrip("\r\n") if line else None
        try:
            return input(prompt)
        except EOFError:
            self.messages.write("\n")
            return None

    def say(self, message: str) -> None:
        self.messages.write(message + "\n")
        self.messages.flush()


def _shown_token(text: str) -> str:
    return text if text == END_OF_TEXT else repr(text)


def _ending_its_line(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
