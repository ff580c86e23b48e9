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


def sampling_options(max_tokens: int):
    """The options shared by generate and chat."""
    options = [
        click.option(
            "--checkpoint",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Checkpoint folder to sample from. Default: the newest one under ./checkpoints.",
        ),
        click.option(
            "--temperature",
            type=click.FloatRange(min=0),
            default=0.8,
            show_default=True,
            help="Randomness: below 1 sharpens the distribution, above 1 flattens it, 0 always takes the most likely token.",
        ),
        click.option(
            "--top-k",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="Sample only among the K most likely tokens; 0 turns this off.",
        ),
        click.option(
            "--top-p",
            type=click.FloatRange(min=0, max=1, min_open=True),
            default=1.0,
            show_default=True,
            help="Nucleus sampling: sample only among the fewest most likely tokens whose probabilities add up to P; 1 turns this off.",
        ),
        click.option(
            "--repetition-penalty",
            type=click.FloatRange(min=0, min_open=True),
            default=1.0,
            show_default=True,
            help="Above 1 makes tokens already in the prompt or the output less likely (CTRL-style); 1 turns this off.",
        ),
        click.option(
            "--max-tokens",
            type=click.IntRange(min=1),
            default=max_tokens,
            show_default=True,
            help="Stop after this many new tokens.",
        ),
        click.option("--seed", type=int, default=None, help="Random seed: the same seed gives the same text. Default: random."),
        click.option(
            "--stop",
            multiple=True,
            metavar="TEXT",
            help="End the output just before this text appears (repeatable). In bash, $'\\n\\n' is a blank line.",
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

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def option_values(params: dict) -> dict:
    """The SamplingOptions fields among a command's parameters."""
    names = ("temperature", "top_k", "top_p", "repetition_penalty", "max_tokens", "seed", "stop")
    return {name: params[name] for name in names}


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
@sampling_options(max_tokens=500)
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
        options = option_values(params)
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
