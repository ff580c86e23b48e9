"""The chat REPL: each line typed is read by the model, which answers by continuing the text.

The conversation lives in the session's LSTM state, so no turn re-reads the history. On a terminal
there is line editing and history (readline); when stdin is piped, only the answers are written to
stdout, one after another, and messages go to stderr, so a chat can be scripted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from textlstm.api import Session
from textlstm.errors import TextlstmError

HISTORY_FILE = Path(os.path.expanduser("~/.textlstm_history"))
PROMPT = "> "
HELP = """\
Type a line and the model continues the conversation. Commands:
  /temperature X         randomness (0: always the most likely token)
  /top-k N               sample among the N most likely tokens (0: off)
  /top-p P               sample among the fewest tokens that make up probability P (1: off)
  /repetition-penalty X  above 1 discourages repeated tokens (1: off)
  /max-tokens N          longest answer, in tokens
  /seed N                restart the random numbers from seed N
  /reset                 forget the conversation
  /save FILE             write the transcript to FILE
  /help                  this help
  /quit                  leave (Ctrl-D does too; Ctrl-C stops an answer)"""

# Slash command -> (SamplingOptions field, parser of its value)
SETTINGS: dict[str, tuple[str, Callable[[str], object]]] = {
    "/temperature": ("temperature", float),
    "/top-k": ("top_k", int),
    "/top-p": ("top_p", float),
    "/repetition-penalty": ("repetition_penalty", float),
    "/max-tokens": ("max_tokens", int),
    "/seed": ("seed", int),
}


class ChatRepl:
    def __init__(self, session: Session, interactive: bool, out: TextIO = sys.stdout, messages: TextIO | None = None):
        self.session = session
        self.interactive = interactive
        self.out = out
        # Piped: stdout carries the answers only.
        self.messages = messages or (out if interactive else sys.stderr)
        self.transcript: list[str] = []

    def run(self, banner: str = "") -> None:
        if self.interactive:
            _load_history()
            if banner:
                self.say(banner)
        try:
            while True:
                line = self.read_line()
                if line is None:
                    break
                if not self.handle(line):
                    break
        finally:
            if self.interactive:
                _save_history()

    def read_line(self) -> str | None:
        """The next line typed, without its newline; None at the end of input."""
        if not self.interactive:
            line = sys.stdin.readline()
            return line.rstrip("\r\n") if line else None
        while True:
            try:
                return input(PROMPT)
            except EOFError:
                self.out.write("\n")
                return None
            except KeyboardInterrupt:  # like Python's REPL: drop the line, ask again
                self.out.write("\n")

    def handle(self, line: str) -> bool:
        """Act on one line; False means leave."""
        if line.startswith("/"):
            return self.command(line)
        if line.strip():
            self.answer(line)
        return True

    def answer(self, line: str) -> None:
        self.transcript.append(f"{PROMPT}{line}\n")
        reply = []
        try:
            for piece in self.session.send(line):
                reply.append(piece)
                self.out.write(piece)
                self.out.flush()
        except KeyboardInterrupt:
            reply.append(" [stopped]")
            self.out.write(" [stopped]")
        self.out.write("\n")
        self.out.flush()
        self.transcript.append("".join(reply) + "\n\n")

    def command(self, line: str) -> bool:
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if name == "/quit":
            return False
        if name == "/help":
            self.say(HELP)
        elif name == "/reset":
            self.session.reset()
            self.transcript.append("[reset]\n\n")
            self.say("conversation forgotten")
        elif name == "/save":
            self.save(argument)
        elif name in SETTINGS:
            self.change_setting(name, argument)
        else:
            self.say(f"unknown command {name}: type /help for the list")
        return True

    def change_setting(self, name: str, argument: str) -> None:
        field, parse = SETTINGS[name]
        try:
            value = parse(argument)
        except ValueError:
            kind = "a whole number" if parse is int else "a number"
            self.say(f"{name} needs {kind}, got {argument!r}")
            return
        try:
            self.session.configure(**{field: value})
        except TextlstmError as error:
            self.say(str(error))
            return
        self.say(f"{field.replace('_', '-')} = {value}")

    def save(self, argument: str) -> None:
        if not argument:
            self.say("/save needs a file name")
            return
        path = Path(argument).expanduser()
        try:
            path.write_text("".join(self.transcript), encoding="utf-8")
        except OSError as error:
            self.say(f"cannot save to {path}: {error.strerror or error}")
            return
        self.say(f"transcript saved to {path}")

    def say(self, message: str) -> None:
        self.messages.write(message + "\n")
        self.messages.flush()


def _load_history() -> None:
    try:
        import readline  # input() gets line editing and history once readline is imported
    except ImportError:  # Windows without pyreadline
        return
    readline.set_history_length(1000)
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass


def _save_history() -> None:
    try:
        import readline

        readline.write_history_file(HISTORY_FILE)
    except (ImportError, OSError):
        pass
