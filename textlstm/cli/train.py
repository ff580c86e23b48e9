"""`textlstm train`: options in, a trained checkpoint folder out."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from textlstm.config import AUTO, DEFAULT_MINUTES, DataConfig, ModelConfig, TrainConfig

# Options that may change when a run is resumed; everything else is fixed by the saved config.
LIMITS = ("epochs", "max_steps", "max_minutes")  # a run ends at whichever of the given ones comes first
RESUMABLE = ("epochs", "max_steps", "max_minutes", "eval_every", "eval_tokens", "save_every", "save_every_minutes", "patience", "device", "threads", "precision")
# Options of how the processes are started, not of the run: they may be given again when resuming.
LAUNCH = ("nproc", "dist_timeout")
POSITIVE = click.IntRange(min=1)
PROBABILITY = click.FloatRange(0.0, 1.0, max_open=True)
# Options whose value "auto" leaves the choice to training (textlstm/training/auto_settings.py); --resume
# accepts "auto" for them whatever the run chose.
AUTO_OPTIONS = ("tokenizer", "dropout", "recurrent_dropout", "weight_decay")
# Options compared with the saved run as paths: "data/x.txt" and "./data/x.txt" are the same corpus,
# and config.json holds --init-from resolved.
PATH_OPTIONS = ("dataset", "init_from")


class AutoOr(click.ParamType):
    """A number of `inner`'s type, or "auto" (None: training chooses it)."""

    def __init__(self, inner: click.ParamType):
        self.inner = inner
        self.name = f"{inner.name}|auto"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
            return None
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, param, ctx=None) -> str:
        return "[FLOAT|auto]"


def _read_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Options from a TOML file become the defaults of this command, so the command line overrides them."""
    if value is None:
        return
    from textlstm.errors import TextlstmError
    from textlstm.cli.options_file import read_options

    known = {p.name for p in ctx.command.params if p.name not in ("config", "help")}
    try:
        ctx.default_map = {**(ctx.default_map or {}), **read_options(value, known)}
    except TextlstmError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


@click.command()
@click.option("--config", type=click.Path(exists=True, dir_okay=False), is_eager=True, expose_value=False,
              callback=_read_config_file,
              help="Read options from this TOML file (keys are option names: hidden-size = 512); "
              "options on the command line override it. Recipes are in recipes/.")
@click.option("--dataset", help="Hugging Face hub id, a local file/folder/glob (txt, json, jsonl, csv, parquet), "
              "or a corpus card name from corpora/. Default: the built-in corpus (Python's own documentation).")
@click.option("--dataset-config", help="Configuration name of a hub dataset.")
@click.option("--split", default=DataConfig.split, show_default=True, help="Split to train on.")
@click.option("--valid-split", help="Split to validate on. Default: the dataset's validation split, "
              "else the last 10% of the training text.")
@click.option("--text-column", help="Column holding the text (json/csv/parquet/hub). Default: 'text' or the only string column.")
@click.option("--tokenizer", type=click.Choice(["char", "word", "bpe", AUTO]), default=DataConfig.tokenizer, show_default=True,
              help="char: one token per character; word: words, punctuation and spacing; bpe: byte-level BPE. "
              "auto (the default): char, which learned more than BPE in the same minutes in every budget measured "
              "(benchmarks/QUALITY.md); the run's config records the one chosen.")
@click.option("--vocab-size", type=click.IntRange(min=8), help="Vocabulary size for word (default 10000) and bpe (default 4096), "
              "also when --tokenizer auto chooses one of them.")
@click.option("--batching", type=click.Choice(["stream", "documents"]), default=DataConfig.batching, show_default=True,
              help="stream: documents joined into one text, truncated BPTT with the state carried across batches (and document ends). "
              "documents: each document on its own, padded and masked; for corpora of short independent texts.")
@click.option("--streaming", is_flag=True, default=DataConfig.streaming,
              help="Read the corpus (local files or a hub id) as a stream, tokenized as training needs it: nothing "
              "is cached on disk and memory does not grow with the corpus. Validation is the stream's first million characters "
              "(or of its validation split), the tokenizer learns from the next ten million; give --max-steps.")
@click.option("--embedding-size", type=POSITIVE, default=ModelConfig.embedding_size, show_default=True)
@click.option("--hidden-size", type=POSITIVE, default=ModelConfig.hidden_size, show_default=True, help="LSTM units per layer.")
@click.option("--layers", type=POSITIVE, default=ModelConfig.layers, show_default=True, help="Stacked LSTM layers.")
@click.option("--dropout", type=AutoOr(PROBABILITY), default=ModelConfig.dropout, show_default=AUTO,
              help="Dropout on embeddings, between LSTM layers and before the output layer. auto: chosen from the "
              "training tokens and the budget (how many epochs the run will see), once the data is prepared.")
@click.option("--recurrent-dropout", type=AutoOr(PROBABILITY), default=ModelConfig.recurrent_dropout, show_default=AUTO,
              help="Dropout on the hidden-to-hidden path, one mask per batch fixed over time. auto: chosen like --dropout.")
@click.option("--embedding-dropout", type=PROBABILITY, default=ModelConfig.embedding_dropout, show_default=True,
              help="Drop whole rows of the embedding matrix in training, one mask over the vocabulary per batch: "
              "every occurrence of a dropped token is zeroed (AWD-LSTM). 0: off.")
@click.option("--cell", type=click.Choice(["lstm", "mogrifier"]), default=ModelConfig.cell, show_default=True,
              help="lstm: the plain LSTM, run by the fused kernel. mogrifier: the Mogrifier LSTM (Melis et al., ICLR 2020): "
              "before each step the input and the previous hidden state gate each other in --mogrifier-rounds rounds, "
              "through full-rank matrices learned per layer; it runs one time step at a time, so it is slower per step. "
              "Works with both --batching modes.")
@click.option("--mogrifier-rounds", type=click.IntRange(min=0), default=ModelConfig.mogrifier_rounds, show_default=True,
              help="Rounds of mutual gating with --cell mogrifier (0: the plain LSTM); ignored with --cell lstm.")
@click.option("--tie-weights/--no-tie-weights", default=ModelConfig.tie_weights, show_default=True,
              help="Share the embedding matrix with the output layer.")
@click.option("--output-layer", type=click.Choice(["full", "adaptive"]), default=ModelConfig.output_layer, show_default=True,
              help="full: softmax over the whole vocabulary. adaptive: adaptive softmax (frequent tokens in a small head, "
              "rare ones in clusters); much faster for large word vocabularies, still an exact distribution.")
@click.option("--adaptive-cutoffs", callback=lambda ctx, param, value: _int_list(value),
              help="Cluster boundaries for --output-layer adaptive, e.g. 2000,10000. Default: 2000,10000 clipped to the vocabulary.")
@click.option("--batch-size", type=POSITIVE, default=TrainConfig.batch_size, show_default=True,
              help="Rows per step, all processes together: with N processes (--nproc, torchrun) each reads "
              "batch-size / N of them, so it must be a multiple of N; a step then sees the same data at any N.")
@click.option("--seq-len", type=POSITIVE, default=TrainConfig.seq_len, show_default=True,
              help="Tokens per row per step (the truncated-BPTT length).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True,
              help="Peak learning rate (AdamW).")
@click.option("--weight-decay", type=AutoOr(click.FloatRange(min=0)), default=TrainConfig.weight_decay, show_default=AUTO,
              help="AdamW weight decay of the weight matrices. auto: chosen with the dropouts.")
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=TrainConfig.schedule, show_default=True,
              help="Learning rate after warmup: cosine decay to 10% of --lr at the last step, or constant.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=TrainConfig.warmup_steps, show_default=True)
@click.option("--clip", type=click.FloatRange(min=0), default=TrainConfig.clip, show_default=True,
              help="Gradient norm clipping (0: off).")
@click.option("--ar", type=click.FloatRange(min=0), default=TrainConfig.ar, show_default=True,
              help="Activation regularization (AWD-LSTM): adds AR * mean(h^2) of the last LSTM layer's outputs after "
              "dropout to the loss that is backpropagated (the reported loss stays the cross-entropy). 0: off.")
@click.option("--tar", type=click.FloatRange(min=0), default=TrainConfig.tar, show_default=True,
              help="Temporal activation regularization (AWD-LSTM): adds TAR * mean((h_t - h_(t-1))^2) of the last LSTM "
              "layer's outputs before dropout to the loss that is backpropagated. 0: off.")
@click.option("--ema", type=PROBABILITY, default=TrainConfig.ema, show_default=True,
              help="Keep an exponential moving average of the weights with this decay (e.g. 0.999; warmed up as "
              "min(EMA, (1+n)/(10+n)) at update n); evaluations and the saved best weights use it, training goes on "
              "with the trained weights. 0: off.")
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
@click.option("--threads", type=POSITIVE, help="CPU threads for torch. Default: OMP_NUM_THREADS if set; else one for "
              "small models, where a second thread only adds waiting, and one per core for large ones (measured in "
              "benchmarks/RESULTS.md).")
@click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default=TrainConfig.precision, show_default=True,
              help="bfloat16: the forward pass under autocast (weights, gradients and optimizer stay float32); "
              "faster on CPUs with bf16 instructions (AVX-512 BF16, AMX) and on recent GPUs. "
              "auto: bfloat16 where the CPU or GPU computes it natively, float32 elsewhere.")
@click.option("--output", type=click.Path(file_okay=False), help="Checkpoint folder. Default: a new folder under checkpoints/.")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run saved in this folder.")
@click.option("--init-from", type=click.Path(file_okay=False),
              help="Fine-tune: start from this checkpoint's weights and tokenizer (its model shape too), "
              "with a new optimizer, schedule and run folder.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --output.")
@click.option("--nproc", type=POSITIVE, help="Train one model with N processes on this machine (DistributedDataParallel, "
              "started through torch.distributed.run). For several machines, use torchrun (see the README).")
@click.option("--dist-timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="With several processes: minutes one waits for the others (process 0 preparing the data "
              "included) before the run stops with an error.")
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Train an LSTM language model; the checkpoint lands in checkpoints/ (or --output)."""
    from textlstm.training import distributed
    from textlstm.cli.progress import RichReporter
    from textlstm.training.trainer import Reporter
    from textlstm.training.trainer import train as run_training

    if (options["nproc"] or 1) > 1:
        _launch(ctx, options["nproc"])
        return
    given = given_options(ctx) - set(LAUNCH)
    reporter = RichReporter() if distributed.launched_rank() == 0 else Reporter()  # process 0 speaks for all
    timeout = options["dist_timeout"]
    if options["resume"]:
        _check_fixed_options(options, given - set(RESUMABLE) - {"resume"})
        overrides = {name: options[name] for name in given if name in RESUMABLE}
        if any(name in overrides for name in LIMITS):  # the limits given replace all the saved ones
            overrides.update({name: None for name in LIMITS if name not in overrides})
        result = run_training(resume=options["resume"], reporter=reporter, train_overrides=overrides, timeout_minutes=timeout)
    else:
        if options["streaming"] and options["epochs"]:
            raise click.UsageError("--epochs needs a corpus of known length: with --streaming give --max-steps")
        config = run_config(options, given)
        result = run_training(config, output=options["output"], overwrite=options["overwrite"], reporter=reporter,
                              timeout_minutes=timeout)
    _report(reporter, result)


def given_options(ctx: click.Context) -> set[str]:
    """Options set on the command line or in the --config file (not left at their defaults)."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP)
    return {name for name in ctx.params if ctx.get_parameter_source(name) in sources}


def run_config(options: dict, given: set[str]):
    """The settings of a new run from the command's options."""
    from textlstm.config import RunConfig

    model = _parent_model(options, given) if options["init_from"] else ModelConfig(**_pick(options, ModelConfig, exclude={"vocab_size"}))
    return RunConfig(
        model=model,
        data=DataConfig(**_pick(options, DataConfig)),
        train=TrainConfig(**_pick(options, TrainConfig)),
    )


def _parent_model(options: dict, given: set) -> ModelConfig:
    """The parent checkpoint's model, with the dropouts given on the command line."""
    import dataclasses

    from textlstm.training.finetune import conflicts, load_parent

    parent = load_parent(options["init_from"])
    refused = conflicts({name: options[name] for name in given}, parent)
    if refused:
        raise click.UsageError(f"{'; '.join(refused)}: with --init-from the model's shape and tokenizer come from the parent")
    changed = {name: options[name] for name in ("dropout", "recurrent_dropout", "embedding_dropout") if name in given}
    return dataclasses.replace(parent.config.model, **changed)


def _check_fixed_options(options: dict, names: set[str]) -> None:
    """Options outside RESUMABLE may be given with --resume (the command the run was started with,
    typed again) as long as they equal the run's saved settings; a changed one is refused."""
    from pathlib import Path

    from textlstm.runs.checkpoint import load_config

    if "overwrite" in names:
        raise click.UsageError("--overwrite replaces a run and --resume continues it: give one of them")
    if "output" in names and Path(options["output"]).resolve() != Path(options["resume"]).resolve():
        raise click.UsageError(f"--output cannot change when resuming: the run is in {options['resume']}, not {options['output']}")
    names = sorted(names - {"output", "overwrite"})
    if not names:
        return
    saved = load_config(Path(options["resume"]))
    # data before model: --vocab-size is what was asked (data.vocab_size), not the vocabulary the
    # tokenizer came out with (model.vocab_size, smaller when the corpus has fewer words)
    sections = (saved.data, saved.model, saved.train)
    for name in names:
        if name in AUTO_OPTIONS and options[name] in (None, AUTO):
            continue  # "auto" was resolved when the run started: its config holds what was chosen
        section = next(s for s in sections if name in s.__dataclass_fields__)
        old, new = getattr(section, name), options[name]
        if name in PATH_OPTIONS and old is not None and new is not None:
            old, new = Path(old).resolve(), Path(new).resolve()
        if old != new:
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(
                f"{flag} cannot change when resuming: the run has {getattr(section, name)}, not {options[name]} "
                f"(only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} can)"
            )


def _launch(ctx: click.Context, nproc: int) -> None:
    """Start `nproc` processes running this same command without --nproc; exit as they did."""
    from textlstm.training import distributed
    from textlstm.training import local_processes as launch
    from textlstm.runs.checkpoint import load_config

    if distributed.under_torchrun():
        raise click.UsageError("--nproc starts the processes itself: leave it out when torchrun starts them")
    resume = ctx.params["resume"]
    distributed.check_batch_splits(load_config(resume).train.batch_size if resume else ctx.params["batch_size"], nproc)
    args = ctx.obj["argv"] if isinstance(ctx.obj, dict) and "argv" in ctx.obj else sys.argv[1:]
    code = launch.run_on_this_machine(nproc, launch.without_option(args[args.index("train") + 1 :], "--nproc"))
    if code:
        sys.exit(code)


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
        reporter.message(f"interrupted by {result.stop_signal.name} at step {result.steps}: checkpoint saved in {result.output}")
        reporter.message(f"continue with: textlstm train --resume {result.output}")
        sys.exit(128 + result.stop_signal)  # the shell's convention: 130 for SIGINT (Ctrl-C), 143 for SIGTERM
    why = "stopped early (no improvement)" if result.stopped_early else "done"
    reporter.message(f"{why} after {result.steps} steps: best validation loss {result.best_valid_loss:.4f}, saved in {result.output}")
