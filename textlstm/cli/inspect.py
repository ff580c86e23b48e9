"""`textlstm inspect`: a model's gates, cells and memory on a text (textlstm/inspection/).

torch is imported inside the command, not here: cli/main.py imports every command module.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from textlstm.cli.generate import model_options, warnings_as_lines

PER_FEATURE = 3  # textlstm.inspection.cells.PER_FEATURE, written out: importing it would load torch


@click.command("inspect")
@click.option("--prompt", metavar="TEXT", help="The text to read; '-' reads it from stdin.")
@click.option(
    "--prompt-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the text from this UTF-8 file instead of --prompt.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write report.html (the text shaded by any cell or gate) and the PNG heatmaps into "
    "(the PNGs need matplotlib). Default: write nothing, print the found cells.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print one JSON object instead of tables: {"cells": [{"layer", "index", "feature", "correlation", '
    '"ablation_bits_on", "ablation_bits_off"}, ...], "memory": [...], "tokens", "characters", '
    '"bits_per_char"}; no states.',
)
@click.option(
    "--feature",
    "patterns",
    metavar="REGEX",
    multiple=True,
    help="A feature of your own: on for the characters a Python regular expression matches. Repeatable.",
)
@click.option(
    "--per-feature",
    type=click.IntRange(min=1),
    default=PER_FEATURE,
    show_default=True,
    help="Cells reported for each feature, those of highest |R|.",
)
@model_options
@click.pass_context
def inspect_command(
    ctx: click.Context,
    prompt: str | None,
    prompt_file: Path | None,
    output: Path | None,
    as_json: bool,
    patterns: tuple[str, ...],
    per_feature: int,
    checkpoint: str | None,
    device: str,
    precision: str,
    quantize: str | None,
) -> None:
    """Look inside the LSTM: its gates, cells and memory on a text.

    Reads the text with the model (the newest run by default) and records, per layer and token, the
    input, forget and output gates and the cell and hidden states. Ranks the cells whose state c
    follows a feature of the text (inside quotes, inside brackets and their depth, position in the
    line, characters left before the line's usual length, indentation, start of a word or sentence,
    inside a comment or string of code, --feature REGEX) by the correlation R, and measures each by
    ablation: the change in bits per character where the feature is on and where it is off when the
    cell's c is held at its mean where the feature is off. Also prints each layer's memory: the
    share of cells whose time constant 1 / (1 - mean forget gate) is over 10, 100 and 1,000 steps.
    """
    text = _read_text(ctx, prompt, prompt_file)
    from textlstm.inspection.inspector import inspect_text, write_report

    with warnings_as_lines():
        started = time.perf_counter()
        inspection = inspect_text(
            text,
            checkpoint,
            device=device,
            precision=precision,
            quantize=quantize,
            regex=patterns,
            per_feature=per_feature,
        )
        seconds = time.perf_counter() - started
        written, note = write_report(inspection, output) if output is not None else ([], None)
    if as_json:
        click.echo(json.dumps(inspection.as_dict()))
    else:
        _print_tables(inspection, seconds)
    for path in written:
        click.echo(f"wrote {path}", err=as_json)
    if note:
        click.echo(f"note: {note}", err=True)


def _read_text(ctx: click.Context, prompt: str | None, prompt_file: Path | None) -> str:
    given = ctx.get_parameter_source("prompt") == ParameterSource.COMMANDLINE
    if given and prompt_file is not None:
        raise click.UsageError("give --prompt or --prompt-file, not both")
    if prompt_file is not None:
        from textlstm.cli.prompt_file import read_prompt_file

        text = read_prompt_file(prompt_file)
    elif given:
        text = sys.stdin.read() if prompt == "-" else prompt
    else:
        raise click.UsageError("give the text to read: --prompt TEXT or --prompt-file FILE")
    if not text:
        raise click.UsageError("the text to inspect is empty")
    return text


def _print_tables(inspection, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    recording = inspection.recording
    console.print(
        f"checkpoint: {inspection.checkpoint}\nread {len(recording.ends):,} tokens "
        f"({int(recording.chars.sum()):,} characters) in {seconds:.1f} s: "
        f"{recording.bits_per_char:.4f} bits per character",
        highlight=False,
    )
    table = Table(
        caption="R: correlation of the cell's c with the feature. Ablation: change in bits per character "
        "with c held at its mean where the feature is off, where the feature is on / off.",
        caption_justify="left",
    )
    for column in ("layer", "cell", "feature", "R", "ablation on", "ablation off"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for cell in inspection.cells:
        table.add_row(
            str(cell.layer),
            str(cell.index),
            cell.feature,
            f"{cell.correlation:+.3f}",
            _bits(cell.ablation_bits_on),
            _bits(cell.ablation_bits_off),
        )
    console.print(table)
    if inspection.quiet_features:
        console.print(f"constant over this text, so no cells: {', '.join(inspection.quiet_features)}", highlight=False)
    for row in inspection.memory.as_dicts():
        console.print(
            f"memory, layer {row['layer']}: time constant over 10 steps {row['share_over_10']:.0%} of cells, "
            f"over 100 {row['share_over_100']:.0%}, over 1,000 {row['share_over_1000']:.0%} "
            f"(median {row['median_steps']:,.1f} steps)",
            highlight=False,
        )


def _bits(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"
