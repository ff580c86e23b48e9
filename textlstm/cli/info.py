"""`textlstm info`: what a checkpoint holds: its layers, tokenizer, corpus and how well it trained."""

from __future__ import annotations

import json
import math

import click


@click.command()
@click.argument("checkpoint", required=False, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of tables.")
def info(checkpoint, as_json) -> None:
    """Model summary (layers, output shapes, parameters), tokenizer, corpus and best validation loss
    of CHECKPOINT: a run folder, a run's name under checkpoints/, or a model on the Hugging Face Hub as
    hf://USER/NAME[@REVISION] (default: the newest run under checkpoints/)."""
    from textlstm.runs.checkpoint import find_latest_checkpoint
    from textlstm.runs.saved_runs import find_run, read_run

    folder = find_run(checkpoint) if checkpoint else find_latest_checkpoint()
    run = read_run(folder)
    details = run.as_dict()
    if as_json:
        click.echo(json.dumps(details))
    else:
        _print(run, details)


def _print(run, details: dict) -> None:
    from rich.console import Console

    from textlstm.model.summary import summary_table

    console = Console(soft_wrap=False, highlight=False)
    console.print(f"checkpoint: {run.folder}", soft_wrap=True)
    console.print(summary_table(run.layers()))
    tokenizer = details["tokenizer"]
    lines = [
        f"tokenizer: {tokenizer['kind']}, {tokenizer['vocab_size']:,} tokens in the vocabulary",
        f"corpus: {details['corpus']} ({details['batching']} batching)",
    ]
    if details["steps"] is None:
        lines.append("trained: no evaluation recorded yet")
    else:
        lines.append(f"trained: {details['steps']:,} step{'' if details['steps'] == 1 else 's'}")
        lines.append(_best_validation(details))
        last_loss = run.records[-1].get("valid_loss")
        if isinstance(last_loss, float) and not math.isfinite(last_loss):  # a diverged run
            lines.append(f"last validation: loss {last_loss:.4f} nats per token at step {details['steps']:,}")
    if details["parent"]:
        lines.append(f"fine-tuned from: {details['parent']}")
    for line in lines:
        console.print(line, soft_wrap=True)


def _best_validation(details: dict) -> str:
    if details["best_step"] is None:
        return "best validation: none with a finite loss"
    bpc = details["best_valid_bits_per_char"]
    return f"best validation: loss {details['best_valid_loss']:.4f} nats per token at step {details['best_step']:,}" + (
        "" if bpc is None else f", {bpc:.4f} bits per character"
    )
