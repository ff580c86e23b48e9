"""`textlstm generate`: sample text from a checkpoint, streamed to stdout.

torch is imported inside the command, not here: cli.py imports every command module, and
`textlstm --help` should not wait for torch.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path

import click

from textlstm.commands.options import dataclass_options, dataclass_values
from textlstm.config import SamplingOptions


def model_options(command):
    """--checkpoint, --device and --precision: which model to load and how to run it."""
    options = [
        click.option(
            "--checkpoint",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Checkpoint folder to sample from. Default: the newest one under ./checkpoints.",
        ),
        click.option("--device", default="cpu", show_default=True, help="torch device to run on: cpu, cuda, cuda:N, mps."),
        click.option(
            "--precision",
            type=click.Choice(["float32", "bfloat16"]),
            default="float32",
            show_default=True,
            help="bfloat16: hold the weights in bfloat16, about 2x the tokens per second on a CPU "
            "(generation reads every weight for each token); the text differs slightly from float32's.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
@click.option("--num-samples", type=click.IntRange(min=1), default=1, show_default=True, help="How many independent samples to write.")
@sampling_options
@model_options
def generate(prompt: str, num_samples: int, checkpoint: Path | None, device: str, precision: str, **params) -> None:
    """Continue a prompt with text sampled from a trained model.

    The prompt is printed first and the new text streams after it as it is produced, so the output
    reads as one continuous text. With --num-samples, samples are separated by a line of dashes.
    """
    if prompt == "-":
        prompt = sys.stdin.read()
    from textlstm.api import load

    with warnings_as_lines():
        model = load(checkpoint, device=device, precision=precision)
        options = sampling_values(params)
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


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
