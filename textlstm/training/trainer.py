"""The training loop, and the setting-up before it, in the order a run goes:

1. choose the tokenizer where it is left at auto (`with_tokenizer_chosen`, tokenizer_choice.py: timed and
   maybe raced on the text, inside the time budget), then read the data (`read_data`): the corpus
   prepared, its tokenizer trained or reused; the choices the data made written into the settings;
2. plan (`planned`, budget_plan.py): the settings left at auto resolved from measurements taken on
   this machine; the settings are final from here on (config.json holds them, `--resume` keeps them);
3. build (`Trainer._build`): model, optimizer, weight average, batches, the training step (step.py)
   and the run's state (run_state.py), new or as saved;
4. train (`Trainer.run`): a step per batch, an evaluation every `eval_every` steps with the best
   weights and the resume state saved, early stopping, a clean stop on Ctrl-C or SIGTERM.

Its other parts sit beside it: the learning rate in `schedule.py`, the optimizer in `optimizer.py`,
new run folders in `runs/new_run.py`, the Ctrl-C and SIGTERM flag in `stop_signals.py`, loss and
throughput in `meter.py`.

Under torchrun (see distributed.py) the same loop trains one model in several processes: each
reads its own rows of every batch (--batch-size counts the rows of all processes together),
DistributedDataParallel averages the gradients, every process evaluates, and only process 0
writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from textlstm.config import AUTO, ModelConfig, RunConfig, TrainConfig
from textlstm.data.batchers import DocumentBatcher, StreamBatcher
from textlstm.data.prepare import corpus_of, prepare
from textlstm.data.streaming import StreamingBatcher
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.evaluation.scoring import evaluate_split
from textlstm.fileio import atomic_write, write_text
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import training_precision
from textlstm.hardware.threads import use_threads
from textlstm.model.network import LSTMLanguageModel, State, model_config_for
from textlstm.runs import checkpoint as ckpt
from textlstm.runs import model_card
from textlstm.runs.new_run import ReplacedRun, check_writable, new_run_folder, prepare_output
from textlstm.training import budget_plan, distributed, finetune, tokenizer_choice, tracking
from textlstm.training.meter import Meter
from textlstm.training.optimizer import build_optimizer, load_optimizer_state
from textlstm.training.run_state import RunState
from textlstm.training.schedule import decay_past_midpoint, decay_progress, learning_rate
from textlstm.training.speed_probe import SpeedProbe
from textlstm.training.step import StepOutcome, TrainingStep
from textlstm.training.stop_signals import StopFlag, agreed
from textlstm.training.weight_average import WeightAverage

MAX_BAD_STEPS = 5  # consecutive non-finite losses before training gives up
AUTO_PATIENCE = 3  # --patience auto: at least this many evaluations without improvement stop a run,
# and at least as many as PATIENCE_SHARE of the run holds: three noisy misses stopped a run evaluated 40
# times before the end of its budget (benchmarks/experiments/e2026_12_02_patience_auto)
PATIENCE_SHARE = 0.2
# and, with a decaying learning rate, not before the decay is this far through: a run that stalled mid-decay
# learned more as the rate came down (benchmarks/experiments/LOG.md, commit 78ce76c)
LATE_DECAY = 0.8
LIMITS = ("epochs", "max_steps", "max_minutes")  # a run ends at whichever of the given ones comes first
now = time.perf_counter  # the loop's clock, in seconds; one name so a test can stand in for it


class Reporter:
    """What the loop tells the outside world; the CLI draws it, the Python API ignores it."""

    def message(self, text: str) -> None: ...
    def ready(self, model: LSTMLanguageModel, config: RunConfig, best_valid_loss: float) -> None: ...
    def start(self, total_steps: int | None, first_step: int) -> None: ...  # None: the run has a time budget only
    def step(self, step: int, loss: float, tokens_per_sec: float, lr: float) -> None: ...
    def evaluated(self, record: dict) -> None: ...
    def sampled(self, step: int, text: str) -> None: ...  # --sample-every
    def stop(self) -> None: ...


# What writes the --sample-every samples: (the evaluated model, the tokenizer, a seed) -> the text.
SampleFunction = Callable[[LSTMLanguageModel, TextTokenizer, int], str]


@dataclass
class TrainResult:
    output: Path
    steps: int
    best_valid_loss: float
    interrupted: bool = False
    stop_signal: signal.Signals | None = None  # what interrupted it: SIGINT (Ctrl-C) or SIGTERM
    stopped_early: bool = False
    records: list[dict] = field(default_factory=list)
    nothing_to_train: str | None = None  # why a resumed run trained no step: its limits were already reached


def token_counts(ids, vocab_size: int, limit: int = 16_000_000, chunk: int = 1 << 20) -> np.ndarray:
    """How often each id occurs in the first `limit` ids (enough for the frequencies the output bias
    starts from), read in chunks so that memory stays small for memory-mapped ids."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, min(len(ids), limit), chunk):
        counts += np.bincount(np.asarray(ids[start : min(start + chunk, limit)], dtype=np.int64), minlength=vocab_size)[
            :vocab_size
        ]
    return counts


@dataclass
class RunData:
    """The corpus as the run reads it: the tokenizer, the stored splits' ids, and a streamed corpus's stream."""

    corpus: object
    tokenizer: TextTokenizer
    splits: dict
    stream: object | None


def with_tokenizer_chosen(
    config: RunConfig, device: torch.device, precision: str, reporter: Reporter
) -> tuple[RunConfig, float]:
    """`config` with --tokenizer auto resolved on the run's own text (tokenizer_choice.py), and the seconds
    that took, counted in the run's time budget. Process 0 measures; every process gets its choice."""
    if config.data.tokenizer != AUTO:  # named, or a resumed or fine-tuned run's
        return config, 0.0

    def choose() -> tokenizer_choice.TokenizerChoice | None:
        if not distributed.is_main():
            return None
        corpus = None if config.data.streaming else corpus_of(config.data)
        return tokenizer_choice.choose_tokenizer(config, corpus, device, precision)

    choice = distributed.from_main(distributed.agree_on_errors(choose))
    vocab_size = config.data.vocab_size if config.data.vocab_size is not None else choice.vocab_size
    size = f" of {vocab_size:,} tokens" if choice.kind != "char" and vocab_size else ""
    reporter.message(f"tokenizer: {choice.kind}{size} ({AUTO}: {choice.reason})")
    data = dataclasses.replace(config.data, tokenizer=choice.kind, vocab_size=vocab_size)
    return dataclasses.replace(config, data=data), choice.seconds


def read_data(
    config: RunConfig, output: Path, resuming: bool, parent: finetune.Parent | None, reporter: Reporter
) -> tuple[RunData, RunConfig]:
    """The corpus prepared as `config.data` says, and the settings with the choices the data made
    (tokenizer kind and vocabulary, a corpus's turn format) written in, so config.json holds them."""
    reused = None  # a new run trains its tokenizer on the corpus
    if resuming:
        reused = ckpt.load_tokenizer(output)
    elif parent is not None:
        reused = parent.tokenizer()
    prepared = prepare(config.data, reused, report=reporter.message)
    data = config.data
    if data.turns is None and prepared.corpus.turns is not None:  # recorded in config.json for chat
        data = dataclasses.replace(data, turns=prepared.corpus.turns)
    splits = prepared.splits
    if parent is not None and "train" in splits:
        if note := finetune.unseen_note(prepared.tokenizer, data.tokenizer, splits["train"].ids):
            reporter.message(note)
    run_data = RunData(prepared.corpus, prepared.tokenizer, splits, prepared.stream)
    return run_data, dataclasses.replace(config, data=data)


def document_batches(config: RunConfig) -> bool:
    """Whether training reads windows of whole documents (a streamed corpus is read as one stream)."""
    return config.data.batching == "documents" and not config.data.streaming


def planned(
    config: RunConfig, data: RunData, device: torch.device, precision: str, before: float = 0.0
) -> budget_plan.Plan:
    """The settings left at auto, resolved (budget_plan.py): with a time budget, from the speed of the
    candidate shapes on this machine, measured by process 0 and told to the others. `before`: seconds of
    the budget spent already (choosing the tokenizer)."""
    train_tokens = data.splits["train"].info.scored_tokens if "train" in data.splits else None  # None: streamed
    timed_ids = data.splits["train" if "train" in data.splits else "valid"].ids
    world = distributed.world_size()

    def plan() -> budget_plan.Plan | None:
        if not distributed.is_main():
            return None
        probe = SpeedProbe(config.train, timed_ids, device, precision, document_batches(config))

        def measure(shape: ModelConfig, batch_size: int):
            # Process 0 times its own rows; every process trains as fast (each evaluates all of validation).
            timed = probe.measure(model_config_for(shape, data.tokenizer, precision), batch_size // world)
            return dataclasses.replace(timed, tokens_per_sec=timed.tokens_per_sec * world)

        valid_tokens = len(data.splits["valid"].ids)
        return budget_plan.plan_run(config, train_tokens, valid_tokens, measure, world, device.type, before)

    return distributed.from_main(distributed.agree_on_errors(plan))


def with_vocabulary_and_launch(config: RunConfig, tokenizer: TextTokenizer, precision: str) -> RunConfig:
    """A new run's settings with the model's vocabulary and the processes it starts with."""
    model = (
        config.model if config.model.vocab_size else model_config_for(config.model, tokenizer, precision)
    )  # fine-tuning: the parent's
    return dataclasses.replace(
        config, model=model, world_size=distributed.world_size(), launch_id=distributed.launch_id()
    )


def make_batcher(config: RunConfig, data: RunData):
    """This process's batches: its rows of each, from the stream, the training ids, or document windows."""
    train, rank, world = config.train, distributed.rank(), distributed.world_size()
    rows = train.batch_size // world
    if config.data.streaming:
        if train.epochs:
            raise TextlstmError("--epochs needs a corpus of known length: with --streaming give --max-steps")
        return StreamingBatcher(data.stream, rows, train.seq_len, rank, world)
    if document_batches(config):
        return DocumentBatcher(data.splits["train"].ids, rows, train.seq_len, train.seed, rank, world)
    return StreamBatcher(data.splits["train"].ids, rows, train.seq_len, rank, world)


def build_model(config: RunConfig, data: RunData, device: torch.device) -> LSTMLanguageModel:
    """The model with its first weights (seeded by --seed), its output bias from the token frequencies."""
    if config.model.vocab_size != data.tokenizer.vocab_size:
        raise TextlstmError("the tokenizer does not match the model's vocabulary size")
    torch.manual_seed(config.train.seed)
    model = LSTMLanguageModel(config.model)
    if "train" in data.splits:  # a streamed corpus has no stored training ids to count
        model.init_output_bias(token_counts(data.splits["train"].ids, data.tokenizer.vocab_size))
    return model.to(device)


def build_training(
    config: RunConfig,
    data: RunData,
    device: torch.device,
    precision: str,
    parent: finetune.Parent | None = None,
    report: Callable[[str], None] = print,
) -> tuple[TrainingStep, object]:
    """A new run's training step (its model, optimizer and --ema weight average) and this process's
    batches, set up as the trainer sets them up: the weights seeded by --seed (or the parent's), the CPU
    threads for the shape, each process's own random stream."""
    train = config.train
    model = build_model(config, data, device)
    if parent is not None:
        step = parent.load_weights(model)
        report(f"fine-tuning {parent.folder} (its weights from step {step:,}): new optimizer and schedule")
    if device.type == "cpu":
        shape, rows = config.model, train.batch_size // distributed.world_size()  # this process's rows of each batch
        use_threads(train.threads, shape.embedding_size, shape.hidden_size, shape.layers, rows, precision)
    distributed.seed_this_process(train.seed)
    average = WeightAverage(model, train.ema) if train.ema else None
    step = TrainingStep(model, build_optimizer(model, train), train, device, precision, average)
    return step, make_batcher(config, data)


def batch_at(
    batcher, step: int, carried: State | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, State | None]:
    """Inputs, targets and (document windows) lengths of the batch of `step`, and the LSTM state it
    starts from: for stream batching the one `carried` from the batch before (none where a pass begins),
    for document windows none."""
    epoch, index = divmod(step, len(batcher))
    if isinstance(batcher, DocumentBatcher):
        inputs, targets, lengths = batcher.batch(index, epoch)
        return inputs, targets, lengths, None
    inputs, targets = batcher.batch(index)
    return inputs, targets, None, None if index == 0 else carried


def step_limit(config: RunConfig, steps_per_epoch: int) -> float:
    """The step the run ends at by --max-steps or --epochs; inf: a time budget alone (--max-minutes)."""
    train = config.train
    limits = [n for n in (train.max_steps, train.epochs and train.epochs * steps_per_epoch) if n]
    return min(limits) if limits else math.inf


class Trainer:
    """A run, set up to train: its settings resolved once (nothing changes them afterwards), its data,
    model, optimizer and batches, and its RunState. `run()` trains it and saves it."""

    def __init__(
        self,
        config: RunConfig,
        output: Path,
        reporter: Reporter | None = None,
        resume: bool = False,
        sample: SampleFunction | None = None,
        card_sample: Callable[[Path], str] | None = None,
        overwrite: bool = False,
    ):
        self.output = Path(output)
        self.reporter = reporter or Reporter()
        self.resuming = resume
        self.sample, self.card_sample = sample, card_sample
        self.overwrite = overwrite  # the run in `output` is replaced once this one is ready to train
        self.replaced: ReplacedRun | None = None  # that run, set aside until this one's first checkpoint
        self.device = distributed.local_device(resolve_device(config.train.device))
        self.precision = training_precision(config.train.precision, self.device)
        self.stop = StopFlag()
        # A missing tracking package is reported before any time goes into the data.
        self.tracker = tracking.tracker_for(config.train.log_to, self.output, distributed.is_main())
        init_from = config.train.init_from
        parent = finetune.load_parent(init_from) if init_from and not resume else None

        # The data, then the plan (process 0 reads and plans first: it fills the caches the others read).
        distributed.check_batch_splits(config.train.batch_size)
        choosing_seconds = 0.0
        if not resume and parent is None:
            config, choosing_seconds = with_tokenizer_chosen(config, self.device, self.precision, self.reporter)
        read: list = []

        def read_saved_state_and_data() -> None:
            # A resume state that cannot be loaded is reported before any time goes into the data.
            saved = ckpt.load_trainer_state(self.output / ckpt.TRAINER_STATE) if resume else None
            read.append((saved, *read_data(config, self.output, resume, parent, self.reporter)))

        distributed.in_turn(read_saved_state_and_data)
        saved, self.data, config = read[0]
        planning_seconds = 0.0
        if not resume:  # a resumed run keeps its plan
            plan = planned(config, self.data, self.device, self.precision, choosing_seconds)
            config, planning_seconds = (
                with_vocabulary_and_launch(plan.config, self.data.tokenizer, self.precision),
                plan.seconds,
            )
            for line in plan.lines:
                self.reporter.message(line)
        self.config = config  # resolved: from here on, read only

        built = distributed.agree_on_errors(lambda: self._build(saved, parent, planning_seconds))
        self.model, self.optimizer, self.average, self.batcher, self.train_step, self.state = built
        self.total_steps = step_limit(config, len(self.batcher))
        self.records: list[dict] = []
        self.last_save = now()  # for --save-every-minutes
        self.time_to_save = False

    def _build(self, saved: dict | None, parent: finetune.Parent | None, planning_seconds: float):
        """Model, optimizer, weight average, batcher, the training step and the run's state: new, or as
        saved. Every process must have built the tokenizer process 0 built."""
        if distributed.from_main(self.data.tokenizer.to_str()) != self.data.tokenizer.to_str():
            raise TextlstmError(
                "this process built another tokenizer than process 0: put TEXTLSTM_CACHE on storage "
                "that every machine shares, so all processes read the one process 0 built"
            )
        config = self.config
        train_step, batcher = build_training(
            config, self.data, self.device, self.precision, parent, self.reporter.message
        )
        model, optimizer, average = train_step.model, train_step.optimizer, train_step.average
        if saved is None:
            return model, optimizer, average, batcher, train_step, RunState(spent_before=planning_seconds)
        try:
            model.load_state_dict(saved["model"])
            load_optimizer_state(optimizer, model, saved["optimizer"])
            if average is not None:
                average.load_state_dict(saved["average"])
            train_step.loss_scaler.load_state_dict(saved.get("loss_scaler"))
            if config.data.streaming:
                batcher.load_state_dict(saved["stream"])
            state = RunState.from_saved(saved, self.device, batcher.batch_size)
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise TextlstmError(
                f"cannot resume from {self.output}: trainer state does not fit this run ({error})"
            ) from None
        self.reporter.message(f"resuming {self.output} at step {state.step}")
        return model, optimizer, average, batcher, train_step, state

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        if self.overwrite and distributed.is_main():
            self.replaced = ReplacedRun.set_aside(self.output)
        self.reporter.ready(self.model, self.config, self.state.best_valid_loss)
        if distributed.is_main() and not self.resuming:
            write_text(self.output / ckpt.CONFIG, self.config.to_json())
            atomic_write(self.output / ckpt.TOKENIZER, self.data.tokenizer.save)
        result = TrainResult(self.output, self.state.step, self.state.best_valid_loss, records=self.records)
        self.tracker.start(self.config)
        try:
            with self.stop:
                self._loop(result)
        finally:
            self.tracker.close()
        result.steps, result.best_valid_loss = self.state.step, self.state.best_valid_loss
        if distributed.is_main():
            model_card.write_model_card(self.output, sample=self.card_sample(self.output) if self.card_sample else None)
        return result

    def _loop(self, result: TrainResult) -> None:
        """Until a limit, the clock, a signal or early stopping ends the run: a step, and every
        eval_every steps an evaluation (with a checkpoint); a checkpoint in between when one is due."""
        state, train = self.state, self.config.train
        state.start_clock(now())
        self.last_save = now()
        meter, bad_steps = Meter(), 0
        if self._patience_spent():  # a resumed run that had stopped early
            self.reporter.message(f"the run stopped early at step {state.step}: raise --patience to train on")
            result.stopped_early = True
            return
        if (spent := self._limit_already_reached()) is not None:
            result.nothing_to_train = spent
            return
        self.reporter.start(None if math.isinf(self.total_steps) else self.total_steps, state.step)
        try:
            while state.step < self.total_steps:
                stop, out_of_time = self._agree_before_step()
                if stop is not None:
                    result.interrupted, result.stop_signal = True, stop
                    break
                if out_of_time:
                    if state.step == 0 and not self.resuming:
                        raise TextlstmError(self._why_no_step())
                    break
                step_start = now()
                outcome = self._train_step()
                state.step += 1  # a skipped step counts too: its batch is passed over
                if math.isfinite(outcome.loss_sum):
                    bad_steps = 0
                    meter.add(outcome.loss_sum, outcome.tokens, now() - step_start)
                    self.reporter.step(
                        state.step, outcome.loss_sum / max(outcome.tokens, 1), meter.recent_rate(), self._lr()
                    )
                else:
                    bad_steps += 1
                    self._skip_step(outcome.loss_sum, bad_steps)
                if state.step % train.eval_every == 0 or state.step == self.total_steps:
                    self._evaluate(meter, final=state.step == self.total_steps)
                    if self._patience_spent():
                        result.stopped_early = True
                        self.reporter.message(self._why_stopped_early())
                        break
                elif self._save_due():
                    self._save_resume_state()
        finally:
            self.reporter.stop()
        if state.evaluated_step != state.step:  # stopped by a signal or the clock between evaluations
            self._evaluate(meter, final=True)

    def _train_step(self) -> StepOutcome:
        """The next batch, at the schedule's learning rate; the LSTM state carried from the batch before
        (stream batching; a new epoch starts from a zero state)."""
        state = self.state
        inputs, targets, lengths, carried = batch_at(self.batcher, state.step, state.lstm_state)
        lr = learning_rate(state.step, self.total_steps, self.config.train, state.clock)
        outcome = self.train_step(inputs, targets, carried, lengths, lr)
        if math.isfinite(outcome.loss_sum):  # a skipped step leaves the carried state as it was
            state.lstm_state = outcome.state
        return outcome

    def _limit_already_reached(self) -> str | None:
        """Why a resumed run has nothing left to train, and how to give it more; None if it has."""
        budget, state = self.config.train.max_minutes, self.state
        if budget and self.resuming and state.spent_before >= 60 * budget:  # a new run's: the loop says
            return (
                f"the run has spent its whole budget of {budget:g} minutes ({state.spent_before / 60:.1f} used): "
                f"resume with a larger total, such as --max-minutes {2 * budget:g}, to train on"
            )
        if state.step >= self.total_steps:
            return (
                f"the run is already at step {state.step:,}: resume with a higher --max-steps or --epochs to train on"
            )
        return None

    def _why_no_step(self) -> str:
        """A new run whose time budget ran out before its first step: what took it, and what to give."""
        budget, state = self.config.train.max_minutes, self.state
        return (
            f"the time budget of {budget:g} minutes ran out before the first step (planning and setting up took "
            f"{state.clock:.1f} s): give a larger --max-minutes"
        )

    def _skip_step(self, loss: float, bad_steps: int) -> None:
        """Report the step whose loss was `loss` (not finite) as skipped; the MAX_BAD_STEPS-th in a row stops the
        run."""
        self.reporter.message(f"step {self.state.step}: loss is {loss}; step skipped (no update, on to the next batch)")
        if bad_steps >= MAX_BAD_STEPS:
            raise TextlstmError(
                f"{MAX_BAD_STEPS} steps in a row had a non-finite loss; stopped. "
                f"The last good checkpoint in {self.output} is intact: try a lower --lr"
            )

    def _why_stopped_early(self) -> str:
        budget, state = self.config.train.max_minutes, self.state
        spent = f" ({state.clock / (60 * budget):.0%} of the {budget:g} minutes)" if budget else ""
        decayed = (
            ", with the learning rate past the middle of its decay," if self.config.train.schedule != "constant" else ""
        )
        return (
            f"stopped early at step {state.step:,}{spent}: the validation loss has not improved in "
            f"{state.evals_since_best} evaluations{decayed} so more training would not help; the best weights are kept"
        )

    def _patience_spent(self) -> bool:
        return self.state.evals_since_best >= self._patience() > 0

    def _patience(self) -> int:
        """--patience; left at auto, AUTO_PATIENCE evaluations or those of PATIENCE_SHARE of the run if more
        (by the evaluations so far and how far the run has come): a run evaluated often, as one with a
        small validation text is, sees the noise of many evaluations, not a trend. With a decaying rate,
        also the misses so far and those until the decay is LATE_DECAY through: before that the loss can
        stall and then fall again as the rate comes down, so no run of misses ends it."""
        patience, state, train = self.config.train.patience, self.state, self.config.train
        if patience is not None:
            return patience
        progress = decay_progress(state.step, self.total_steps, train, state.clock)
        if progress <= 0:
            return AUTO_PATIENCE
        per_progress = state.step / train.eval_every / progress  # evaluations per unit of progress
        needed = max(AUTO_PATIENCE, math.ceil(PATIENCE_SHARE * per_progress))
        if train.schedule != "constant" and progress < LATE_DECAY:
            needed = max(needed, state.evals_since_best + math.ceil((LATE_DECAY - progress) * per_progress))
        return needed

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _evaluate(self, meter: Meter, final: bool) -> None:
        """Evaluate, record, checkpoint. `final`: the last evaluation of this run (early stopping
        also makes it the last)."""
        train, state = self.config.train, self.state
        valid = self.data.splits["valid"]
        result = evaluate_split(
            self._evaluated_model(),
            valid.ids,
            valid.info,
            batch_size=min(train.batch_size, 32),
            seq_len=max(train.seq_len, 256),
            max_tokens=train.eval_tokens,
            device=self.device,
            precision=self.precision,
            documents=self.config.data.batching == "documents",
        )
        # Every process scores the same tokens with the same weights; process 0's figures decide for all.
        result = distributed.from_main(result)
        record = {
            "step": state.step,
            "epoch": self.batcher.passes if self.config.data.streaming else state.step / len(self.batcher),
            "train_loss": meter.mean_loss(),
            "valid_loss": result.loss,
            "valid_perplexity": result.perplexity,
            "valid_bits_per_token": result.bits_per_token,
            "valid_bits_per_char": result.bits_per_char,
            "valid_tokens": result.tokens,
            "tokens_per_sec": meter.rate(),
            "lr": self._lr(),
            "elapsed_sec": state.elapsed(now()),
            "world_size": distributed.world_size(),
        }
        meter.reset()
        improved = result.loss < state.best_valid_loss
        if improved:
            state.best_valid_loss = result.loss
            state.evals_since_best = 0
        elif decay_past_midpoint(state.step, self.total_steps, train, state.clock):
            state.evals_since_best += 1  # before, a miss is the noise of a high learning rate
        state.evaluated_step = state.step
        record["final"] = final or self._patience_spent()
        self.records.append(record)
        self._save(record, improved)
        self.reporter.evaluated(record)
        self._follow(record)

    def _evaluated_model(self) -> LSTMLanguageModel:
        """What evaluations score and model.safetensors holds: the averaged weights with --ema."""
        return self.average.model if self.average is not None else self.model

    def _follow(self, record: dict) -> None:
        """The evaluation to the tracker (--log-to), then a sample when one is due (--sample-every)."""
        self.tracker.evaluated(record)
        every = self.config.train.sample_every * self.config.train.eval_every
        if (
            self.sample is not None
            and every
            and distributed.is_main()
            and (self.state.step % every == 0 or record["final"])
        ):
            self._write_sample()

    def _write_sample(self) -> None:
        """A sample from the evaluated weights, seeded by the run's seed and the step: training's random
        numbers are not drawn from, so a run samples or not and learns the same."""
        step = self.state.step
        text = self.sample(
            self._evaluated_model(), self.data.tokenizer, tracking.sample_seed(self.config.train.seed, step)
        )
        tracking.append_sample(self.output, step, text)
        self.reporter.sampled(step, text)
        self.tracker.sampled(step, text)

    def _save_due(self) -> bool:
        train = self.config.train
        if train.save_every and self.state.step % train.save_every == 0:
            return True
        return self.time_to_save

    def _save(self, record: dict, improved: bool) -> None:
        if distributed.is_main():
            if improved:  # a first model.safetensors is written by _save_resume_state in any case
                ckpt.save_weights(self._evaluated_model(), self.output / ckpt.BEST_WEIGHTS, self.state.step)
            with open(self.output / ckpt.METRICS, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        self._save_resume_state()
        if distributed.is_main():  # after the resume state, which the card does not hold up
            model_card.write_model_card(self.output)

    def _save_resume_state(self) -> None:
        """Write everything --resume needs in one atomic file (weights of the best model aside)."""
        self.last_save = now()
        saved = self._saved_state()  # every process takes part: their random and LSTM states are gathered
        if distributed.is_main():
            if not (self.output / ckpt.BEST_WEIGHTS).exists():  # so generate works before the first evaluation
                ckpt.save_weights(self._evaluated_model(), self.output / ckpt.BEST_WEIGHTS, self.state.step)
            ckpt.save_trainer_state(saved, self.output / ckpt.TRAINER_STATE)
            if self.replaced is not None:  # the new run is saved: the one it replaces can go
                self.replaced.discard()
                self.replaced = None

    def put_back_replaced(self) -> None:
        """The run failed before its first checkpoint: the run it was to replace comes back."""
        if self.replaced is not None:
            self.replaced.put_back()
            self.replaced = None

    def _agree_before_step(self) -> tuple[signal.Signals | None, bool]:
        """(the signal to stop for, None to train on; the max_minutes budget is spent); also sets the
        state's clock, the elapsed time the schedule reads, and `time_to_save` (--save-every-minutes).

        Under several processes one exchange gives all the same answers, so they stop and save after
        the same step: a stop signal on any process, and one clock (the mean of theirs) for the rest.
        """
        minutes = self.config.train.save_every_minutes
        local = torch.tensor(
            [
                *self.stop.votes(),
                self.state.elapsed(now()),
                float(bool(minutes) and now() - self.last_save >= minutes * 60),
            ],
            dtype=torch.float64,
        )
        if distributed.world_size() > 1:
            local = distributed.sum_across(local)
        *stop_votes, elapsed_sum, save_votes = local.tolist()
        self.state.clock = elapsed_sum / distributed.world_size()
        self.time_to_save = save_votes > 0
        budget = self.config.train.max_minutes
        return agreed(stop_votes), bool(budget) and self.state.clock >= 60 * budget

    def _saved_state(self) -> dict:
        """trainer_state.pt: the run's state whole, with the weights, optimizer and what else keeps state."""
        return self.state.to_saved(now()) | {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "stream": self.batcher.state_dict() if self.config.data.streaming else None,
            "average": self.average.state_dict() if self.average is not None else None,
            "loss_scaler": self.train_step.loss_scaler.state_dict(),
        }


def train(
    config: RunConfig | None = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    checkpoints_root: str | Path = "checkpoints",
    train_overrides: dict | None = None,
    timeout_minutes: float = distributed.DEFAULT_TIMEOUT_MINUTES,
    sample: SampleFunction | None = None,
    card_sample: Callable[[Path], str] | None = None,
) -> TrainResult:
    """Train a model as `config` says; return where it was saved and how it went.

    resume: a checkpoint folder to continue. Its own config.json is used, with `train_overrides`
    (TrainConfig fields such as max_steps or epochs) applied on top; limits among them (epochs,
    max_steps, max_minutes) replace all the saved limits.
    config.train.init_from: a checkpoint folder to fine-tune. Its model shape, tokenizer and weights
    are used; of config.model only the dropouts apply.

    sample: what writes the samples of config.train.sample_every, called on process 0 as
    sample(model, tokenizer, seed) -> text; without one there are no samples. `textlstm train`
    passes one that writes about 200 characters with the generation API; from Python, for instance
    `lambda model, tokenizer, seed: textlstm.TextGenerator(model, tokenizer).generate(max_tokens=200, seed=seed)`.
    card_sample: what writes the model card's sample when the run ends, card_sample(run folder) ->
    text (the saved weights' greedy text: textlstm/cli/samples.py); without one the card has none.

    Under torchrun every process calls this with the same arguments and they train one model;
    timeout_minutes is how long a process waits for the others before the run stops with an error.
    """
    with distributed.session(timeout_minutes):
        return _train(
            config, output, resume, overwrite, reporter, checkpoints_root, train_overrides, sample, card_sample
        )


def _train(
    config, output, resume, overwrite, reporter, checkpoints_root, train_overrides, sample, card_sample
) -> TrainResult:
    if resume is None and distributed.restart_count():
        # torchrun restarted the processes (--max-restarts): go on with the run this launch started.
        found = distributed.from_main(distributed.run_of_this_launch(output, checkpoints_root))
        if found is not None and distributed.from_main((found / ckpt.TRAINER_STATE).is_file()):
            resume = found
        elif found is not None:  # it stopped before its first save: start it again
            output, overwrite = found, True
    if resume is not None:
        folder = Path(resume)
        saved = distributed.agree_on_errors(lambda: _config_to_resume(folder, train_overrides))
        return Trainer(saved, folder, reporter, resume=True, sample=sample, card_sample=card_sample).run()
    config = config or RunConfig(model=ModelConfig())
    if config.train.init_from:
        config = finetune.inherit(config, finetune.load_parent(config.train.init_from))
    if output is None:  # process 0 names it for all
        output = distributed.from_main(new_run_folder(Path(checkpoints_root), config))
    output = Path(output)
    created = not output.exists()
    distributed.agree_on_errors(lambda: prepare_output(output, overwrite) if distributed.is_main() else None)
    trainer = None
    try:
        trainer = Trainer(config, output, reporter, sample=sample, card_sample=card_sample, overwrite=overwrite)
        return trainer.run()
    except BaseException:
        if distributed.is_main():
            if trainer is not None:
                trainer.put_back_replaced()
            if created and output.is_dir() and not _holds_a_checkpoint(output):
                shutil.rmtree(output)  # a new folder, failed before anything was saved: leave no half run behind
        raise


def _holds_a_checkpoint(folder: Path) -> bool:
    return (folder / ckpt.TRAINER_STATE).exists() or (folder / ckpt.BEST_WEIGHTS).exists()


def _config_to_resume(folder: Path, train_overrides: dict | None) -> RunConfig:
    if not (folder / ckpt.TRAINER_STATE).is_file():
        raise TextlstmError(f"cannot resume {folder}: no {ckpt.TRAINER_STATE} there")
    saved = ckpt.load_config(folder)
    saved = dataclasses.replace(saved, train=_resumed_train_config(saved.train, train_overrides or {}))
    if distributed.is_main():
        check_writable(folder)
    return saved


def _resumed_train_config(saved: TrainConfig, overrides: dict) -> TrainConfig:
    """The saved settings with `overrides` on top. Limits given replace all the saved ones: a run
    that ended by the clock, resumed with max_steps, trains to that step."""
    if any(name in overrides for name in LIMITS):
        overrides = {name: None for name in LIMITS} | overrides
    return dataclasses.replace(saved, **overrides)
