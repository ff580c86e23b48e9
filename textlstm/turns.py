"""How a conversation becomes text: the one format used by `textlstm chat`, the server's chat
endpoint, and any corpus card that declares turns.

A user turn is the user prefix, the text and a newline; the model's answer follows the bot prefix
and ends at a blank line or where the model starts the next user turn:

    ROMEO: What light through yonder window breaks?
    JULIET: It is the east.
    ROMEO: ...

With empty prefixes (the default) a turn is just a line of text, and an answer ends at a blank line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from textlstm.errors import TextlstmError

BLANK_LINE = "\n\n"


@dataclass(frozen=True)
class TurnFormat:
    user_prefix: str = field(default="", metadata={"help": 'Text that starts each of your turns, e.g. "ROMEO: ".'})
    bot_prefix: str = field(
        default="", metadata={"help": 'Text that starts each of the model\'s answers, e.g. "JULIET: ".'}
    )

    def user_turn(self, text: str) -> str:
        """The text the model reads for one user turn, up to where its answer starts."""
        return f"{self.user_prefix}{text}\n{self.bot_prefix}"

    def stops(self) -> tuple[str, ...]:
        """Where an answer ends: a blank line, or the model beginning the next user turn."""
        if self.user_prefix.strip():
            return (BLANK_LINE, "\n" + self.user_prefix.rstrip())
        return (BLANK_LINE,)

    def conversation(self, turns: Iterable[tuple[str, str]]) -> str:
        """A whole conversation as text: `turns` are (role, text) pairs, role "user" or "assistant".
        Ending with a user turn, it is ready for the next answer; ending with an answer, it is the
        transcript, each answer ending its line."""
        parts = []
        for role, text in turns:
            if role == "assistant":
                parts.append(f"{text}\n")
            else:
                parts.append(self.user_turn(text))
        return "".join(parts)


def turn_format(table: dict, where: str) -> TurnFormat:
    """A TurnFormat from a table of settings (a corpus card's [chat], config.json); bad ones raise TextlstmError."""
    names = [option.name for option in dataclasses.fields(TurnFormat)]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise TextlstmError(f"{where} has unknown keys: {', '.join(unknown)} (known: {', '.join(names)})")
    for name, value in table.items():
        if not isinstance(value, str):
            raise TextlstmError(f"{where}: '{name}' must be a string")
    return TurnFormat(**table)
