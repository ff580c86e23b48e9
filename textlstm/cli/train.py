"""`textlstm train`: options in, a trained checkpoint folder out."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from textlstm.cli.options import dataclass_options, dataclass_values, flag, option_fields, takes_auto
from textlstm.config import AUTO, DataConfig, ModelConfig, TrainConfig

# Options that may change when a run is resumed; everything else is fixed by the saved config.
RESUMABLE = (
    "epochs",
    "max_steps",
    "max_minutes",
    "eval_every",
    "eval_tokens",
    "save_every",
    "save_every_minutes",
    "patience",
    "device",
    "threads",
    "precision",
    "sample_every",
    "log_to",
)
# Options of how the processes are started, not of the run: they may be given again when resuming.
LAUNCH = ("nproc", "dist_timeout")
POSITIVE = click.IntRange(min=1)
# The settings of a run: each field that is not internal is an option, declared on the field (textlstm/config.py).
SETTINGS = (DataConfig, ModelConfig, TrainConfig)
# Options whose value "auto" leaves the choice to training (textlstm/training/auto_settings.py); --resume
# accepts "auto" for them whatever the run chose.
AUTO_OPTIONS = tuple(field.name for settings in SETTINGS for field in option_fields(settings) if takes_auto(field))
# Options compared with the saved run as paths: "data/x.txt" and "./data/x.txt" are the same corpus,
# and config.json holds --init-from resolved (a Hub id as the cache folder it named).
PATH_OPTIONS = ("dataset", "init_from")


def _read_config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Options from a TOML file become the defaults of this command, so the command line overrides them."""
    if value is None:
        return
    from textlstm.cli.options_file import read_options
    from textlstm.errors import TextlstmError

    known = {p.name for p in ctx.command.params if p.name not in ("config", "help")}
    try:
        ctx.default_map = {**(ctx.default_map or {}), **read_options(value, known)}
    except TextlstmError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


@click.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_read_config_file,
    help="Read options from this TOML file (keys are option names: hidden-size = 512); "
    "options on the command line override it. Recipes are in recipes/.",
)
@dataclass_options(DataConfig)
@dataclass_options(ModelConfig)
@dataclass_options(TrainConfig)
@click.option(
    "--output", type=click.Path(file_okay=False), help="Checkpoint folder. Default: a new folder under checkpoints/."
)
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run saved in this folder.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the textlstm run in --output: it is set aside once the "
    "new run is ready to train, deleted at the new run's first checkpoint, and put back if the new run "
    "fails before then. A folder that is not a textlstm run is refused.",
)
@click.option(
    "--nproc",
    type=POSITIVE,
    help="Train one model with N processes on this machine (DistributedDataParallel, "
    "started through torch.distributed.run). For several machines, use torchrun (see docs/processes.md).",
)
@click.option(
    "--dist-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="With several processes: minutes one waits for the others (process 0 preparing the data "
    "included) before the run stops with an error.",
)
@click.pass_context
def train(ctx: click.Context, **options) -> None:
    """Train an LSTM language model; the checkpoint lands in checkpoints/ (or --output)."""
    from textlstm.cli.progress import RichReporter
    from textlstm.cli.samples import card_sample, training_sample
    from textlstm.training import distributed
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
        # train() lets the limits given replace all the saved ones; "auto" keeps what the run chose.
        overrides = {
            name: options[name]
            for name in given
            if name in RESUMABLE and not (name in AUTO_OPTIONS and options[name] is None)
        }
        result = run_training(
            resume=options["resume"],
            reporter=reporter,
            train_overrides=overrides,
            timeout_minutes=timeout,
            sample=training_sample,
            card_sample=card_sample,
        )
    else:
        if options["streaming"] and options["epochs"]:
            raise click.UsageError("--epochs needs a corpus of known length: with --streaming give --max-steps")
        config = run_config(options, given)
        result = run_training(
            config,
            output=options["output"],
            overwrite=options["overwrite"],
            reporter=reporter,
            timeout_minutes=timeout,
            sample=training_sample,
            card_sample=card_sample,
        )
    _report(reporter, result)


def given_options(ctx: click.Context) -> set[str]:
    """Options set on the command line or in the --config file (not left at their defaults)."""
    sources = (ParameterSource.COMMANDLINE, ParameterSource.DEFAULT_MAP)
    return {name for name in ctx.params if ctx.get_parameter_source(name) in sources}


def run_config(options: dict, given: set[str]):
    """The settings of a new run from the command's options."""
    from textlstm.config import RunConfig

    model = (
        _parent_model(options, given) if options["init_from"] else ModelConfig(**dataclass_values(ModelConfig, options))
    )
    return RunConfig(
        model=model,
        data=DataConfig(**dataclass_values(DataConfig, options)),
        train=TrainConfig(**dataclass_values(TrainConfig, options)),
    )


def _parent_model(options: dict, given: set) -> ModelConfig:
    """The parent checkpoint's model, with the dropouts given on the command line."""
    import dataclasses

    from textlstm.training.finetune import conflicts, load_parent

    parent = load_parent(options["init_from"])
    refused = conflicts({name: options[name] for name in given}, parent)
    if refused:
        raise click.UsageError(
            f"{'; '.join(refused)}: with --init-from the model's shape and tokenizer come from the parent"
        )
    changed = {name: options[name] for name in ("dropout", "recurrent_dropout", "embedding_dropout") if name in given}
    return dataclasses.replace(parent.config.model, **changed)


def _check_fixed_options(options: dict, names: set[str]) -> None:
    """Options outside RESUMABLE may be given with --resume (the command the run was started with,
    typed again) as long as they equal the run's saved settings; a changed one is refused."""
    from textlstm.runs.checkpoint import load_config

    if "overwrite" in names:
        raise click.UsageError("--overwrite replaces a run and --resume continues it: give one of them")
    if "output" in names and Path(options["output"]).resolve() != Path(options["resume"]).resolve():
        raise click.UsageError(
            f"--output cannot change when resuming: the run is in {options['resume']}, not {options['output']}"
        )
    names = sorted(names - {"output", "overwrite"})
    if not names:
        return
    saved = load_config(Path(options["resume"]))
    for name in names:
        if name in AUTO_OPTIONS and options[name] in (None, AUTO):
            continue  # "auto" was resolved when the run started: its config holds what was chosen
        old = saved_value = getattr(_part_declaring(saved, name), name)
        new = options[name]
        if name in PATH_OPTIONS and old is not None and new is not None:
            old, new = Path(old).resolve(), _as_path(name, new)
        if old != new:
            raise click.UsageError(
                f"{flag(name)} cannot change when resuming: the run has {saved_value}, not {options[name]} "
                f"(only {', '.join(flag(n) for n in RESUMABLE)} can)"
            )


def _as_path(name: str, value: str) -> Path:
    """A path option's value as config.json holds it: resolved, and an --init-from Hub id as the
    folder of the Hub's cache it names."""
    if name == "init_from":
        from textlstm.runs.hub import resolve_checkpoint

        return resolve_checkpoint(value).resolve()
    return Path(value).resolve()


def _part_declaring(saved, name: str):
    """The part of a saved RunConfig (data, model or train) that has the option `name`. --vocab-size
    is data.vocab_size, what was asked; model.vocab_size, what the tokenizer came out with, is internal."""
    return next(
        part for part in (saved.data, saved.model, saved.train) if name in {f.name for f in option_fields(type(part))}
    )


def _launch(ctx: click.Context, nproc: int) -> None:
    """Start `nproc` processes running this same command without --nproc; exit as they did."""
    from textlstm.runs.files import load_config
    from textlstm.training import distributed, local_processes

    if distributed.under_torchrun():
        raise click.UsageError("--nproc starts the processes itself: leave it out when torchrun starts them")
    resume = ctx.params["resume"]
    distributed.check_batch_splits(load_config(resume).train.batch_size if resume else ctx.params["batch_size"], nproc)
    args = ctx.obj["argv"] if isinstance(ctx.obj, dict) and "argv" in ctx.obj else sys.argv[1:]
    code = local_processes.run_on_this_machine(
        nproc, local_processes.without_option(args[args.index("train") + 1 :], "--nproc")
    )
    if code:
        sys.exit(code)


def _report(reporter, result) -> None:
    if result.interrupted:
        reporter.message(
            f"interrupted by {result.stop_signal.name} at step {result.steps}: checkpoint saved in {result.output}"
        )
        reporter.message(f"continue with: textlstm train --resume {result.output}")
        sys.exit(128 + result.stop_signal)  # the shell's convention: 130 for SIGINT (Ctrl-C), 143 for SIGTERM
    if result.nothing_to_train:
        reporter.message(f"nothing trained: {result.nothing_to_train}")
        return
    why = "stopped early (no improvement)" if result.stopped_early else "done"
    reporter.message(
        f"{why} after {result.steps} steps: best validation loss {result.best_valid_loss:.4f}, saved in {result.output}"
    )
