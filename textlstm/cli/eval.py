"""`textlstm eval`: a checkpoint and some text in; loss, perplexity and bits per character out."""

from __future__ import annotations

import json
import math

import click

from textlstm.cli.options import dataclass_options
from textlstm.config import DeviceSettings

# The defaults of textlstm.evaluation.dynamic, written out: importing it here would load torch for every command.
DYNAMIC_LR, DYNAMIC_DECAY, DYNAMIC_SEQ_LEN = 0.05, 0.001, 50

POSITIVE = click.IntRange(min=1)
CAPTION = (
    "Bits per character and per byte of the same text compare across tokenizers (char, word, BPE); "
    "per-token loss and perplexity do not."
)


def _finite(ctx, param, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number.", ctx=ctx, param=param)
    return value


@click.command("eval")
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False),
    help="Checkpoint folder, or a model on the Hugging Face Hub: hf://USER/NAME[@REVISION]. "
    "Default: the newest under checkpoints/.",
)
@click.option(
    "--dataset",
    help="Text to score, in any form `textlstm train --dataset` accepts. "
    "Default: the corpus the checkpoint was trained on.",
)
@click.option("--dataset-config", help="Configuration name of a hub dataset.")
@click.option(
    "--split", help="Split to score, whole (e.g. test). Default: the validation text that training holds out."
)
@click.option(
    "--text-column", help="Column holding the text (json/csv/parquet/hub). Default: 'text' or the only string column."
)
@click.option(
    "--batch-size",
    type=POSITIVE,
    default=32,
    show_default=True,
    help="Rows scored side by side (parts of the text, or documents for a --batching documents model); "
    "changes speed, not the result.",
)
@click.option(
    "--seq-len",
    type=POSITIVE,
    help="Tokens per forward pass; changes speed and memory, not the result. Default 256. "
    "With --dynamic: tokens per segment, one update after each (default 50); changes the result.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table.")
@dataclass_options(DeviceSettings)
@click.option(
    "--dynamic",
    is_flag=True,
    help="Dynamic evaluation (Krause et al. 2018): read the text as one stream (one row, --batch-size "
    "is not used), score each segment of --seq-len tokens, then take one plain SGD step on it, "
    "pulling the weights back toward the trained ones by --dynamic-decay. Every token is scored "
    "before any update that saw it; the checkpoint on disk is not changed.",
)
@click.option(
    "--dynamic-lr",
    type=click.FloatRange(min=0),
    default=DYNAMIC_LR,
    callback=_finite,
    show_default=True,
    help="SGD learning rate of --dynamic, on the segment's mean loss per token (0: static, one row).",
)
@click.option(
    "--dynamic-decay",
    type=click.FloatRange(min=0, max=1),
    default=DYNAMIC_DECAY,
    callback=_finite,
    show_default=True,
    help="With --dynamic, the fraction of the way back to the trained weights after each step.",
)
def eval_command(
    checkpoint,
    dataset,
    dataset_config,
    split,
    text_column,
    batch_size,
    seq_len,
    as_json,
    device,
    precision,
    dynamic,
    dynamic_lr,
    dynamic_decay,
) -> None:
    """Perplexity and bits per character/byte of a checkpoint on held-out text."""
    from textlstm.evaluation.scoring import evaluate_checkpoint

    if seq_len is None:
        seq_len = DYNAMIC_SEQ_LEN if dynamic else 256
    result = evaluate_checkpoint(
        checkpoint,
        dataset=dataset,
        dataset_config=dataset_config,
        split=split,
        text_column=text_column,
        batch_size=batch_size,
        seq_len=seq_len,
        device=device,
        precision=precision,
        dynamic=dynamic,
        dynamic_lr=dynamic_lr,
        dynamic_decay=dynamic_decay,
    )
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        _print_table(result)


def _print_table(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    console.print(f"checkpoint: {result.checkpoint}\ntext: {result.text}", highlight=False, soft_wrap=True)
    if result.dynamic:
        settings = result.dynamic
        console.print(
            f"scoring: dynamic (SGD lr {settings['lr']:g}, decay {settings['decay']:g}, "
            f"segments of {settings['seq_len']} tokens)",
            highlight=False,
        )
    table = Table(caption=CAPTION, caption_justify="left")
    table.add_column("")
    for unit in ("per token", "per character", "per byte"):
        table.add_column(unit, justify="right")
    loss_sum = result.loss_sum
    table.add_row("loss (nats)", f"{result.loss:.4f}", _per(loss_sum, result.chars), _per(loss_sum, result.bytes))
    table.add_row(
        "bits", f"{result.bits_per_token:.4f}", _fmt(result.bits_per_char, ".4f"), _fmt(result.bits_per_byte, ".4f")
    )
    table.add_row("perplexity", f"{result.perplexity:.3f}", "", "")
    table.add_row(
        "scored", f"{result.tokens:,} tokens", _fmt(result.chars, ",") + " chars", _fmt(result.bytes, ",") + " bytes"
    )
    console.print(table)
    console.print(
        f"scored in {result.seconds:.1f} s ({result.tokens / max(result.seconds, 1e-9):,.0f} tokens/s)", highlight=False
    )


def _per(total: float, count: int | None) -> str:
    return f"{total / count:.4f}" if count else "-"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
