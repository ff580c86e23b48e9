"""The chat REPL: each turn typed is read by the model, which answers in the session's turn format.

The conversation lives in the session's LSTM state, so no turn re-reads the history. On a terminal
there is line editing and history (readline); when stdin is piped, only the answers are written to
stdout, one after another, and messages go to stderr, so a chat can be scripted.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import textwrap
import typing
from pathlib import Path
from typing import TextIO

from textlstm.cli.options import base_type
from textlstm.cli.prompt_file import read_prompt_file
from textlstm.config import SamplingOptions
from textlstm.errors import TextlstmError
from textlstm.generation.generator import Session

HISTORY_FILE = Path(os.path.expanduser("~/.textlstm_history"))
PROMPT = "> "  # when the turn format has no user prefix (else the prefix is the prompt)
CONTINUATION = "... "
BLOCK = '"""'  # a line of it opens a block of several lines, another closes it
LEAVE_HINT = "to leave, type /quit or press Ctrl-D"


def _setting_commands() -> dict[str, tuple[dataclasses.Field, type]]:
    """/name -> (SamplingOptions field, int or float) for each number setting; stop is a list (--stop)."""
    hints = typing.get_type_hints(SamplingOptions)
    commands = {}
    for option in dataclasses.fields(SamplingOptions):
        kind, repeatable = base_type(hints[option.name])
        if kind in (int, float) and not repeatable:
            commands["/" + option.name.replace("_", "-")] = (option, kind)
    return commands


SETTINGS = _setting_commands()


def _help() -> str:
    rows = [(f"{name} {option.metadata['metavar']}", option.metadata["help"]) for name, (option, _) in SETTINGS.items()]
    rows += [
        ("/show", "the current settings"),
        ("/load FILE", "send the text of FILE as one turn"),
        ("/reset", "forget the conversation"),
        ("/save FILE", "write the transcript, with the turn prefixes, to FILE"),
        ("/help", "this help"),
        ("/quit", "leave (Ctrl-D does too; Ctrl-C stops an answer)"),
    ]
    lines = [
        f"Type a line and the model answers. A line of {BLOCK} starts a turn of several lines; another {BLOCK} ends it."
    ]
    lines.append("Commands:")
    for name, text in rows:
        lines.append(textwrap.fill(text, width=100, initial_indent=f"  {name:<24}", subsequent_indent=" " * 26))
    return "\n".join(lines)


HELP = _help()


class Style:
    """ANSI colours that set the prompt and the answer's prefix apart from the model's text; none when off."""

    def __init__(self, on: bool):
        self.on = on

    def prompt(self, text: str) -> str:
        # \001 and \002 tell readline that the codes between them take no room on the line.
        return f"\001\033[1;36m\002{text}\001\033[0m\002" if self.on and text else text

    def bot(self, text: str) -> str:
        return f"\033[1;35m{text}\033[0m" if self.on and text else text

    def message(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.on and text else text


class ChatRepl:
    def __init__(
        self,
        session: Session,
        interactive: bool,
        out: TextIO | None = None,
        messages: TextIO | None = None,
        color: bool = False,
    ):
        self.session = session
        self.interactive = interactive
        self.out = out or sys.stdout
        # Piped: stdout carries the answers only.
        self.messages = messages or (self.out if interactive else sys.stderr)
        self.style = Style(color)
        self.earlier: list[str] = []  # transcripts of the conversations before each /reset

    @property
    def prompt(self) -> str:
        return self.session.turns.user_prefix or PROMPT

    def run(self, banner: str = "") -> None:
        if self.interactive:
            _load_history()
            if banner:
                self.say(banner)
        try:
            while True:
                try:
                    line = self.read_line(self.prompt)
                    if line is not None and line.strip() == BLOCK:
                        line = self.read_block()
                        if line.strip():
                            self.answer(line)
                        continue
                except KeyboardInterrupt:  # like Python's REPL: drop what was typed, ask again
                    self.input_interrupted()
                    continue
                if line is None or not self.handle(line):
                    break
        finally:
            if self.interactive:
                _save_history()

    def read_line(self, prompt: str) -> str | None:
        """The next line typed, without its newline; None at the end of input."""
        if not self.interactive:
            line = sys.stdin.readline()
            return line.rstrip("\r\n") if line else None
        try:
            return input(self.style.prompt(prompt))
        except EOFError:
            self.out.write("\n")
            return None

    def read_block(self) -> str:
        """The lines up to the closing line of the block (or the end of input), as one text."""
        lines = []
        while (line := self.read_line(CONTINUATION)) is not None and line.strip() != BLOCK:
            lines.append(line)
        return "\n".join(lines)

    def input_interrupted(self) -> None:
        self.out.write("\n")
        if not _typed_so_far():
            self.say(f"({LEAVE_HINT})")

    def handle(self, line: str) -> bool:
        """Act on one line; False means leave."""
        if line.startswith("/"):
            return self.command(line)
        if line.strip():
            self.answer(line)
        return True

    def answer(self, text: str) -> None:
        if self.interactive:
            self.out.write(self.style.bot(self.session.turns.bot_prefix))
        try:
            for piece in self.session.send(text):
                self.out.write(piece)
                self.out.flush()
        except KeyboardInterrupt:
            self.out.write(" [stopped]")
        self.out.write("\n")
        self.out.flush()

    def command(self, line: str) -> bool:
        name, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if name == "/quit":
            return False
        if name == "/help":
            self.say(HELP)
        elif name == "/show":
            self.show()
        elif name == "/reset":
            if self.session.history:
                self.earlier.append(self.session.text())
            self.session.reset()
            self.say("conversation forgotten")
        elif name == "/save":
            self.save(argument)
        elif name == "/load":
            self.load(argument)
        elif name in SETTINGS:
            self.change_setting(name, argument)
        else:
            self.say(f"unknown command {name}: type /help for the list")
        return True

    def change_setting(self, name: str, argument: str) -> None:
        option, kind = SETTINGS[name]
        try:
            value = kind(argument)
        except ValueError:
            self.say(f"{name} needs {'a whole number' if kind is int else 'a number'}, got {argument!r}")
            return
        try:
            self.session.configure(**{option.name: value})
        except TextlstmError as error:
            self.say(str(error))
            return
        self.say(f"{name[1:]} = {value}")

    def show(self) -> None:
        settings = dataclasses.asdict(self.session.options) | dataclasses.asdict(self.session.turns)
        width = max(map(len, settings))
        for name, value in settings.items():
            self.say(f"{name.replace('_', '-'):<{width}} = {_shown(value)}")

    def load(self, argument: str) -> None:
        if not argument:
            self.say("/load needs a file name")
            return
        try:
            text = read_prompt_file(argument).rstrip("\n")
        except TextlstmError as error:
            self.say(str(error))
            return
        if not text.strip():
            self.say(f"{argument} holds no text")
            return
        self.say(f"read {len(text):,} characters from {argument}")
        self.answer(text)

    def save(self, argument: str) -> None:
        if not argument:
            self.say("/save needs a file name")
            return
        path = Path(argument).expanduser()
        try:
            conversations = [text for text in (*self.earlier, self.session.text()) if text]
            path.write_text("\n".join(conversations), encoding="utf-8")  # a blank line between them
        except OSError as error:
            self.say(f"cannot save to {path}: {error.strerror or error}")
            return
        self.say(f"transcript saved to {path}")

    def say(self, message: str) -> None:
        self.messages.write(self.style.message(message) + "\n")
        self.messages.flush()


def _shown(value) -> str:
    if isinstance(value, tuple):
        return " ".join(repr(item) for item in value) or "(none)"
    if isinstance(value, str):
        return repr(value)
    return "(none)" if value is None else str(value)


def _typed_so_far() -> str:
    """What was on the input line when Ctrl-C came (readline keeps it); empty without readline."""
    try:
        import readline
    except ImportError:
        return ""
    return readline.get_line_buffer()


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
