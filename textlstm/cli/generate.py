"""`textlstm generate`: sample text from a checkpoint, streamed to stdout.

torch is imported inside the command, not here: cli/main.py imports every command module, and
`textlstm --help` should not wait for torch.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import click
from click.core import ParameterSource

from textlstm.cli.options import dataclass_options, dataclass_values
from textlstm.config import DeviceSettings, SamplingOptions


def model_options(command):
    """--checkpoint, --device, --precision and --quantize: which model to load and how to run it."""
    options = [
        click.option(
            "--checkpoint",
            type=click.Path(file_okay=False),
            default=None,
            help="Checkpoint folder to sample from, or a model on the Hugging Face Hub: hf://USER/NAME[@REVISION]. "
            "Default: the newest folder under ./checkpoints.",
        ),
        dataclass_options(DeviceSettings),
        quantize_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


quantize_option = click.option(
    "--quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    callback=lambda ctx, param, value: None if value == "none" else value,
    help="int8: int8 weights for the LSTM and the output layer, for sampling on the CPU (speed and bits/char against "
    "float32: benchmarks/RESULTS.md); the text differs slightly from float32's. With --device auto or cpu and "
    "--precision auto or float32 only.",
)

sampling_options = dataclass_options(SamplingOptions)


def sampling_values(params: dict) -> dict:
    """The SamplingOptions fields among a command's parameters."""
    return dataclass_values(SamplingOptions, params)


@contextlib.contextmanager
def warnings_as_lines():
    """Show Python warnings as one `warning: ...` line on stderr, every time they happen."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: click.echo(f"warning: {message}", err=True)
        yield


@click.command()
@click.option(
    "--prompt",
    default="",
    metavar="TEXT",
    help="Text to continue; '-' reads it from stdin. Empty (the default) starts a new document.",
)
@click.option(
    "--prompt-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the prompt from this UTF-8 text file (for long prompts) instead of --prompt.",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many independent samples to write.",
)
@click.option(
    "--interactive",
    is_flag=True,
    help="Write the text yourself, one token at a time: each step shows the most likely next tokens with their "
    "probabilities; type a number to take one, or any other text to add it. Ctrl-D ends and prints the text.",
)
@click.option(
    "--choices",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="With --interactive: how many next tokens to show.",
)
@sampling_options
@model_options
@click.pass_context
def generate(
    ctx: click.Context,
    prompt: str,
    prompt_file: Path | None,
    num_samples: int,
    interactive: bool,
    choices: int,
    checkpoint: str | None,
    device: str,
    precision: str,
    quantize: str | None,
    **params,
) -> None:
    """Continue a prompt with text sampled from a trained model.

    The prompt is printed first and the new text streams after it as it is produced, so the output
    reads as one continuous text. With --num-samples, samples are separated by a line of dashes.
    """
    _check_combinations(ctx, prompt, prompt_file, num_samples, interactive)
    if prompt_file is not None:
        from textlstm.cli.prompt_file import read_prompt_file

        prompt = read_prompt_file(prompt_file)
    elif prompt == "-":
        prompt = sys.stdin.read()
    from textlstm.generation.generator import load

    with warnings_as_lines():
        model = load(checkpoint, device=device, precision=precision, quantize=quantize)
        options = sampling_values(params)
        if interactive:
            _choose_tokens(model, prompt, options, choices)
            return
        for index in range(num_samples):
            if index:
                _write("---\n")
            # Sample i uses seed + i: the samples differ, and the whole run repeats with the same --seed.
            seed = None if options["seed"] is None else options["seed"] + index
            pieces = model.stream(prompt, **{**options, "seed": seed})
            _write(prompt)
            last = prompt
            for piece in pieces:
                _write(piece)
                last = piece
            if not last.endswith("\n"):
                _write("\n")


def _check_combinations(
    ctx: click.Context, prompt: str, prompt_file: Path | None, num_samples: int, interactive: bool
) -> None:
    given = {name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if prompt_file is not None and "prompt" in given:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if interactive and num_samples > 1:
        raise click.UsageError("--interactive writes one text: leave out --num-samples")
    if interactive and prompt == "-":
        raise click.UsageError(
            "--interactive reads your choices from stdin, so --prompt - cannot read the prompt from it: "
            "use --prompt-file"
        )
    if "choices" in given and not interactive:
        raise click.UsageError("--choices needs --interactive")


def _choose_tokens(model, prompt: str, options: dict, choices: int) -> None:
    from textlstm.cli.token_by_token import ChooserLoop
    from textlstm.config import SamplingOptions
    from textlstm.generation.token_choice import NextTokenChooser

    chooser = NextTokenChooser(model, prompt, SamplingOptions(**options))
    ChooserLoop(chooser, choices, interactive=sys.stdin.isatty()).run()


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
