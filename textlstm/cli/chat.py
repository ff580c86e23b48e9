"""`textlstm chat`: an interactive REPL on a checkpoint; the LSTM state carries the conversation."""

from __future__ import annotations

import dataclasses
import sys

import click
from click.core import ParameterSource

from textlstm.cli.generate import model_options, sampling_options, sampling_values, warnings_as_lines
from textlstm.cli.options import dataclass_options, dataclass_values
from textlstm.turns import TurnFormat


@click.command()
@dataclass_options(TurnFormat)
@sampling_options
@model_options
@click.option(
    "--color",
    is_flag=True,
    help="Colour the prompt and the answer's prefix apart from the model's text (on a terminal only).",
)
@click.pass_context
def chat(
    ctx: click.Context, checkpoint: str | None, device: str, precision: str, quantize: str | None, color: bool, **params
) -> None:
    """Talk to a model: each line you type is a turn, and the model answers it.

    A turn is read as --user-prefix, your text and a newline, then --bot-prefix; the answer streams
    until the model ends the text, writes a blank line, starts the next user turn, writes a --stop
    string or reaches --max-tokens. The prefixes default to those of the checkpoint's corpus card
    (its [chat] table), else none. The model remembers the conversation (in its LSTM state) until
    /reset. A line of \"\"\" starts a turn of several lines; another ends it. Type /help for the
    commands (/temperature, /top-k, /top-p, /max-tokens, /seed, /show, /load, /reset, /save, /quit).
    With stdin piped, each input line is answered and only the answers go to stdout.
    """
    from textlstm.cli.repl import BLOCK, ChatRepl
    from textlstm.generation.generator import load

    interactive = sys.stdin.isatty()
    prefixes = {
        name: value
        for name, value in dataclass_values(TurnFormat, params).items()
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    with warnings_as_lines():
        model = load(checkpoint, device=device, precision=precision, quantize=quantize)
        session = model.session(turns=dataclasses.replace(model.turns, **prefixes), **sampling_values(params))
        banner = (
            f"textlstm chat with {model.checkpoint}. Type a line to talk, {BLOCK} for several lines, "
            "/help for commands, Ctrl-D to leave."
        )
        ChatRepl(session, interactive=interactive, color=color and sys.stdout.isatty()).run(banner)
