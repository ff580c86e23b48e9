"""`textlstm train`: options in, a trained checkpoint folder out."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from textlstm.config import DEFAULT_MINUTES, DataConfig, ModelConfig, TrainConfig

# Options that may change when a run is resumed; everything else is fixed by the saved config.
LIMITS = ("epochs", "max_steps", "max_minutes")  # a run ends at whichever of the given ones comes first
RESUMABLE = ("epochs", "max_steps", "max_minutes", "eval_every", "eval_tokens", "save_every", "save_every_minutes", "patience", "device", "precision")
POSITIVE = click.IntRange(min=1)
PROBABILITY = click.FloatRange(0.0, 1.0, max_open=True)


@click.command()
@click.option("--dataset", help="Hugging Face hub id, a local file/folder/glob (txt, json, jsonl, csv, parquet), "
              "or a corpus card name from corpora/. Default: the built-in corpus (Python's own documentation).")
@click.option("--dataset-config", help="Configuration name of a hub dataset.")
@click.option("--split", default=DataConfig.split, show_default=True, help="Split to train on.")
@click.option("--valid-split", help="Split to validate on. Default: the dataset's validation split, "
              "else the last 10% of the training text.")
@click.option("--text-column", help="Column holding the text (json/csv/parquet/hub). Default: 'text' or the only string column.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe"]), default=DataConfig.tokenizer, show_default=True,
              help="char: one token per character; word: words, punctuation and spacing; bpe: byte-level BPE.")
@click.option("--vocab-size", type=click.IntRange(min=8), help="Vocabulary size for word (default 10000) and bpe (default 4096).")
@click.option("--batching", type=click.Choice(["stream", "documents"]), default=DataConfig.batching, show_default=True,
              help="stream: documents joined into one text, truncated BPTT with the state carried across batches. "
              "documents: each document on its own, padded and masked; for corpora of short independent texts.")
@click.option("--embedding-size", type=POSITIVE, default=ModelConfig.embedding_size, show_default=True)
@click.option("--hidden-size", type=POSITIVE, default=ModelConfig.hidden_size, show_default=True, help="LSTM units per layer.")
@click.option("--layers", type=POSITIVE, default=ModelConfig.layers, show_default=True, help="Stacked LSTM layers.")
@click.option("--dropout", type=PROBABILITY, default=ModelConfig.dropout, show_default=True,
              help="Dropout on embeddings, between LSTM layers and before the output layer.")
@click.option("--recurrent-dropout", type=PROBABILITY, default=ModelConfig.recurrent_dropout, show_default=True,
              help="Dropout on the hidden-to-hidden path, one mask per batch fixed over time.")
@click.option("--tie-weights/--no-tie-weights", default=ModelConfig.tie_weights, show_default=True,
              help="Share the embedding matrix with the output layer.")
@click.option("--output-layer", type=click.Choice(["full", "adaptive"]), default=ModelConfig.output_layer, show_default=True,
              help="full: softmax over the whole vocabulary. adaptive: adaptive softmax (frequent tokens in a small head, "
              "rare ones in clusters); much faster for large word vocabularies, still an exact distribution.")
@click.option("--adaptive-cutoffs", callback=lambda ctx, param, value: _int_list(value),
              help="Cluster boundaries for --output-layer adaptive, e.g. 2000,10000. Default: 2000,10000 clipped to the vocabulary.")
@click.option("--batch-size", type=POSITIVE, default=TrainConfig.batch_size, show_default=True)
@click.option("--seq-len", type=POSITIVE, default=TrainConfig.seq_len, show_default=True,
              help="Tokens per row per step (the truncated-BPTT length).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True,
              help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=TrainConfig.weight_decay, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=TrainConfig.schedule, show_default=True,
              help="Learning rate after warmup: cosine decay to 10% of --lr at the last step, or constant.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=TrainConfig.warmup_steps, show_default=True)
@click.option("--clip", type=click.FloatRange(min=0), default=TrainConfig.clip, show_default=True,
              help="Gradient norm clipping (0: off).")
@click.option("--epochs", type=POSITIVE, help="Passes over the training split.")
@click.option("--max-steps", type=POSITIVE, help="Training steps.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help=f"Minutes of training; the learning-rate schedule then follows the clock. Of --epochs, --max-steps "
              f"and --max-minutes, the run ends at whichever given one comes first. "
              f"Default, with none of them given: {DEFAULT_MINUTES:g} minutes.")
@click.option("--eval-every", type=POSITIVE, default=TrainConfig.eval_every, show_default=True,
              help="Evaluate and save a checkpoint every N steps (and at the end).")
@click.option("--save-every", type=POSITIVE, help="Also save the resume state every N steps. Default: at each evaluation.")
@click.option("--save-every-minutes", type=click.FloatRange(min=0), default=TrainConfig.save_every_minutes, show_default=True,
              help="Also save the resume state when this many minutes have passed since the last save (0: off).")
@click.option("--eval-tokens", type=POSITIVE, default=TrainConfig.eval_tokens, show_default=True,
              help="Validation tokens scored by each evaluation during training (textlstm eval scores the whole split).")
@click.option("--patience", type=click.IntRange(min=0), default=TrainConfig.patience, show_default=True,
              help="Stop after this many evaluations without improvement (0: never).")
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--device", default=TrainConfig.device, show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default=TrainConfig.precision, show_default=True,
              help="bfloat16: the forward pass under autocast (weights, gradients and optimizer stay float32); "
              "faster on CPUs with bf16 instructions (AVX-512 BF16, AMX) and on recent GPUs. "
              "auto: bfloat16 where the CPU or GPU computes it natively, float32 elsewhere.")
@click.option("--output", type=click.Path(file_okay=False), help="Checkpoint folder. Default: a new folder under checkpoints/.")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run saved in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --output.")
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Train an LSTM language model; the checkpoint lands in checkpoints/ (or --output)."""
    from textlstm.config import RunConfig
    from textlstm.progress import RichReporter
    from textlstm.train import train as run_training

    given = {name for name in options if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    reporter = RichReporter()
    if options["resume"]:
        fixed = sorted(given - set(RESUMABLE) - {"resume"})
        if fixed:
            flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
            raise click.UsageError(f"{flags} cannot change when resuming; only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} can")
        overrides = {name: options[name] for name in given if name != "resume"}
        if any(name in overrides for name in LIMITS):  # the limits given replace all the saved ones
            overrides.update({name: None for name in LIMITS if name not in overrides})
        result = run_training(resume=options["resume"], reporter=reporter, train_overrides=overrides)
    else:
        config = RunConfig(
            model=ModelConfig(**_pick(options, ModelConfig, exclude={"vocab_size"})),
            data=DataConfig(**_pick(options, DataConfig)),
            train=TrainConfig(**_pick(options, TrainConfig)),
        )
        result = run_training(config, output=options["output"], overwrite=options["overwrite"], reporter=reporter)
    _report(reporter, result)


def _int_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _pick(options: dict, cls, exclude: set = frozenset()) -> dict:
    names = set(cls.__dataclass_fields__) - exclude
    return {name: options[name] for name in names if name in options and options[name] is not None}


def _report(reporter, result) -> None:
    if result.interrupted:
        reporter.message(f"interrupted at step {result.steps}: checkpoint saved in {result.output}")
        reporter.message(f"continue with: textlstm train --resume {result.output}")
        sys.exit(130)
    why = "stopped early (no improvement)" if result.stopped_early else "done"
    reporter.message(f"{why} after {result.steps} steps: best validation loss {result.best_valid_loss:.4f}, saved in {result.output}")
