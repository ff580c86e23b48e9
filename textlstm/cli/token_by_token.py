"""The prompt loop of `textlstm generate --interactive`: shows the likely next tokens, reads the
user's pick or text (generation/token_choice.py keeps the text and the model's state).
"""

from __future__ import annotations

import sys
from typing import TextIO

from textlstm.generation.token_choice import END_OF_TEXT, Candidate, NextTokenChooser

SHOWN_TAIL = 60  # characters of the text so far shown above the choices


class ChooserLoop:
    """Shows the choices, reads one line per step: a number picks that token, Enter picks the most
    likely one, a line starting with a backslash is text without it, any other line is text.
    The end of input (Ctrl-D), Ctrl-C or choosing end of text finishes; the text goes to `out`.
    """

    def __init__(
        self,
        chooser: NextTokenChooser,
        count: int,
        interactive: bool,
        out: TextIO | None = None,
        messages: TextIO | None = None,
    ):
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
        lines += [
            f"{number:>4}  {candidate.probability:6.1%}  {_shown_token(candidate.text)}"
            for number, candidate in enumerate(shown, 1)
        ]
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
