"""`textlstm chat`: an interactive REPL on a checkpoint; the LSTM state carries the conversation."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from textlstm.commands.generate import model_options, sampling_options, sampling_values, warnings_as_lines


@click.command()
@sampling_options
@model_options
def chat(checkpoint: Path | None, device: str, precision: str, **params) -> None:
    """Talk to a model: each line you type is read by the model, which answers by continuing the text.

    An answer streams until the model ends the text, writes a blank line, writes a --stop string or
    reaches --max-tokens. The model remembers the conversation (in its LSTM state) until /reset.
    Type /help for the commands (/temperature, /top-k, /top-p, /max-tokens, /seed, /reset, /save,
    /quit). With stdin piped, each input line is answered and only the answers go to stdout.
    """
    from textlstm.api import load
    from textlstm.chat import ChatRepl

    interactive = sys.stdin.isatty()
    with warnings_as_lines():
        model = load(checkpoint, device=device, precision=precision)
        session = model.session(**sampling_values(params))
        banner = f"textlstm chat with {model.checkpoint}. Type a line to talk, /help for commands, Ctrl-D to leave."
        ChatRepl(session, interactive=interactive).run(banner)
