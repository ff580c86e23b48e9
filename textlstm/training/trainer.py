"""The training loop: each step (forward, backward, gradient clipping, AdamW), an evaluation every
`eval_every` steps and at the end with the best weights and the resume state saved, early stopping,
exact resume and a clean stop on Ctrl-C or SIGTERM.

Its parts sit beside it: the learning rate in `schedule.py`, the optimizer in `optimizer.py`, new run
folders in `runs/new_run.py`, the Ctrl-C and SIGTERM flag in `stop_signals.py`, loss and throughput in `meter.py`.

Under torchrun (see distributed.py) the same loop trains one model in several processes: each
reads its own rows of every batch (--batch-size counts the rows of all processes together),
DistributedDataParallel averages the gradients, every process evaluates, and only process 0
writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from textlstm.config import ModelConfig, RunConfig, TrainConfig
from textlstm.data.batchers import DocumentBatcher, StreamBatcher
from textlstm.data.prepare import prepare
from textlstm.data.streaming import StreamingBatcher
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.evaluation.scoring import evaluate_split
from textlstm.fileio import atomic_write, write_text
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import autocast, training_precision
from textlstm.hardware.threads import use_threads
from textlstm.model.network import LSTMLanguageModel, detach_state
from textlstm.runs import checkpoint as ckpt
from textlstm.runs import model_card
from textlstm.runs.new_run import ReplacedRun, check_writable, new_run_folder, prepare_output
from textlstm.training import auto_settings, budget_plan, distributed, finetune, tracking
from textlstm.training import rank_state
from textlstm.training.loss_scaling import LossScaler
from textlstm.training.meter import Meter
from textlstm.training.optimizer import build_optimizer, load_optimizer_state
from textlstm.training.schedule import decay_past_midpoint, decay_progress, learning_rate
from textlstm.training.speed_probe import SpeedProbe
from textlstm.training.stop_signals import StopFlag, agreed
from textlstm.training.weight_average import WeightAverage

MAX_BAD_STEPS = 5  # consecutive non-finite losses before training gives up
AUTO_PATIENCE = 3  # --patience auto: at least this many evaluations without improvement stop a run,
# and at least as many as PATIENCE_SHARE of the run holds (a 15-minute run on 11,000 characters of
# validation text, evaluated 40 times, stopped at 81% of its budget on three misses within 0.005 of its best)
PATIENCE_SHARE = 0.2
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


def model_config_for(model: ModelConfig, tokenizer) -> ModelConfig:
    """`model` with the vocabulary of `tokenizer`, and a char tokenizer's byte tokens on their own
    small softmax when the output layer allows it (textlstm/model/byte_softmax.py)."""
    byte_start = tokenizer.byte_fallback_start if model.output_layer == "full" and not model.tie_weights else None
    return dataclasses.replace(model, vocab_size=tokenizer.vocab_size, byte_fallback_start=byte_start)


def token_counts(ids, vocab_size: int, limit: int = 16_000_000, chunk: int = 1 << 20) -> np.ndarray:
    """How often each id occurs in the first `limit` ids (enough for the frequencies the output bias
    starts from), read in chunks so that memory stays small for memory-mapped ids."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, min(len(ids), limit), chunk):
        counts += np.bincount(np.asarray(ids[start : min(start + chunk, limit)], dtype=np.int64), minlength=vocab_size)[:vocab_size]
    return counts


class Trainer:
    def __init__(self, config: RunConfig, output: Path, reporter: Reporter | None = None, resume: bool = False,
                 sample: SampleFunction | None = None, card_sample: Callable[[Path], str] | None = None,
                 overwrite: bool = False):
        self.config = config
        self.output = Path(output)
        self.reporter = reporter or Reporter()
        self.resuming = resume
        self.overwrite = overwrite  # the run in `output` is replaced once this one is ready to train
        self.replaced: ReplacedRun | None = None  # that run, set aside until this one's first checkpoint
        self.sample = sample
        self.card_sample = card_sample
        self.device = distributed.local_device(resolve_device(config.train.device))
        self.precision = training_precision(config.train.precision, self.device)
        self.loss_scaler = LossScaler(self.precision, self.device)
        self.stop = StopFlag()
        self.planning_seconds = 0.0  # what the planner's measurements took (_plan)

    # ------------------------------------------------------------------ setup

    def _load_data(self) -> None:
        data = self.config.data
        reused = None  # a new run trains its tokenizer on the corpus
        if self.resuming:
            reused = ckpt.load_tokenizer(self.output)
        elif self.parent is not None:
            reused = self.parent.tokenizer()
        prepared = prepare(data, reused, report=self.reporter.message, choose_tokenizer=auto_settings.choose_tokenizer)
        self.corpus, self.tokenizer, self.splits = prepared.corpus, prepared.tokenizer, prepared.splits
        self.stream = prepared.stream
        # "auto" settings become what was chosen, so config.json (resume, eval, generate) holds those.
        data = self.config.data = dataclasses.replace(data, tokenizer=prepared.tokenizer_kind, vocab_size=prepared.vocab_size)
        if self.parent is not None and "train" in self.splits and (note := finetune.unseen_note(self.tokenizer, data.tokenizer, self.splits["train"].ids)):
            self.reporter.message(note)
        if data.turns is None and self.corpus.turns is not None:  # recorded in config.json for chat
            self.config.data = dataclasses.replace(data, turns=self.corpus.turns)

    def _set_up(self) -> None:
        """Data, plan, model, optimizer, resume state. Under several processes, process 0 reads the
        data first (it fills the caches the others then read) and plans for all, and an error on any
        process stops all."""
        distributed.in_turn(self._load_saved_state_and_data)
        self._plan()
        distributed.agree_on_errors(self._build_and_resume)

    @property
    def _document_batches(self) -> bool:
        """Whether training reads windows of whole documents (a streamed corpus is read as one stream)."""
        return self.config.data.batching == "documents" and not self.config.data.streaming

    def _plan(self) -> None:
        """The settings left at auto, resolved (budget_plan.py): with a time budget, from the speed of
        the candidate shapes on this machine, measured by process 0. A resumed run keeps its plan."""
        if self.resuming:
            return
        train_tokens = self.splits["train"].info.scored_tokens if "train" in self.splits else None  # None: streamed
        timed_ids = self.splits["train" if "train" in self.splits else "valid"].ids
        rows = self.config.train.batch_size // distributed.world_size()

        def plan() -> budget_plan.Plan | None:
            if not distributed.is_main():
                return None
            probe = SpeedProbe(self.config.train, timed_ids, rows, self.device, self.precision, self._document_batches)
            def measure(shape: ModelConfig):
                # Process 0 times its own rows; every process trains as fast (each evaluates all of validation).
                timed = probe.measure(model_config_for(shape, self.tokenizer))
                return dataclasses.replace(timed, tokens_per_sec=timed.tokens_per_sec * distributed.world_size())

            return budget_plan.plan_run(self.config, train_tokens, len(self.splits["valid"].ids), measure)

        planned = distributed.from_main(distributed.agree_on_errors(plan))
        self.config, self.planning_seconds = planned.config, planned.seconds
        for line in planned.lines:
            self.reporter.message(line)

    def _load_saved_state_and_data(self) -> None:
        distributed.check_batch_splits(self.config.train.batch_size)
        # A resume state that cannot be loaded is reported before any time goes into the data.
        self.saved_state = ckpt.load_trainer_state(self.output / ckpt.TRAINER_STATE) if self.resuming else None
        self._load_data()

    def _build_and_resume(self) -> None:
        if distributed.from_main(self.tokenizer.to_str()) != self.tokenizer.to_str():
            raise TextlstmError(
                "this process built another tokenizer than process 0: put TEXTLSTM_CACHE on storage "
                "that every machine shares, so all processes read the one process 0 built"
            )
        self._build()
        if self.parent is not None:
            step = self.parent.load_weights(self.model)
            self.reporter.message(f"fine-tuning {self.parent.folder} (its weights from step {step:,}): new optimizer and schedule")
        ema = self.config.train.ema
        self.average = WeightAverage(self.model, ema) if ema else None
        if self.saved_state is not None:
            self._resume(self.saved_state)
            self.saved_state = None

    def _build(self) -> None:
        train_cfg = self.config.train
        if self.config.model.vocab_size == 0:
            self.config.model = model_config_for(self.config.model, self.tokenizer)
        elif self.config.model.vocab_size != self.tokenizer.vocab_size:
            raise TextlstmError("the tokenizer does not match the model's vocabulary size")
        torch.manual_seed(train_cfg.seed)
        self.model = LSTMLanguageModel(self.config.model)
        if "train" in self.splits:  # a streamed corpus has no stored training ids to count
            self.model.init_output_bias(token_counts(self.splits["train"].ids, self.tokenizer.vocab_size))
        self.model.to(self.device)
        rank, world = distributed.rank(), distributed.world_size()
        rows = train_cfg.batch_size // world  # this process's rows of each batch
        if self.device.type == "cpu":
            model = self.config.model
            use_threads(train_cfg.threads, model.embedding_size, model.hidden_size, model.layers, rows, self.precision)
        distributed.seed_this_process(train_cfg.seed)
        self.optimizer = build_optimizer(self.model, train_cfg)
        if self.config.data.streaming:
            if train_cfg.epochs:
                raise TextlstmError("--epochs needs a corpus of known length: with --streaming give --max-steps")
            self.batcher = StreamingBatcher(self.stream, rows, train_cfg.seq_len, rank, world)
        elif self._document_batches:
            self.batcher = DocumentBatcher(self.splits["train"].ids, rows, train_cfg.seq_len, train_cfg.seed, rank, world)
        else:
            self.batcher = StreamBatcher(self.splits["train"].ids, rows, train_cfg.seq_len, rank, world)
        steps_per_epoch = len(self.batcher)
        limits = [n for n in (train_cfg.max_steps, train_cfg.epochs and train_cfg.epochs * steps_per_epoch) if n]
        self.total_steps = min(limits) if limits else math.inf  # inf: a time budget alone (max_minutes)
        self.step = 0
        self.lstm_state = None
        self.best_valid_loss = math.inf
        self.evals_since_best = 0
        self.evaluated_step = -1  # the step of the last evaluation
        self.elapsed_before = self.planning_seconds  # the time budget counts the planner's measurements
        self.time_to_save = False
        self.records: list[dict] = []

    def _resume(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            load_optimizer_state(self.optimizer, self.model, state["optimizer"])
            if self.average is not None:
                self.average.load_state_dict(state["average"])
            self.step = int(state["step"])
            self.best_valid_loss = float(state["best_valid_loss"])
            self.evals_since_best = int(state["evals_since_best"])
            self.evaluated_step = int(state.get("evaluated_step", -1))
            self.elapsed_before = float(state["elapsed_sec"])
            self.lstm_state = rank_state.restore(state, self.device, self.batcher.batch_size)
            self.loss_scaler.load_state_dict(state.get("loss_scaler"))
            if self.config.data.streaming:
                self.batcher.load_state_dict(state["stream"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise TextlstmError(f"cannot resume from {self.output}: trainer state does not fit this run ({error})") from None
        self.reporter.message(f"resuming {self.output} at step {self.step}")

    def _write_run_files(self) -> None:
        if not self.resuming:
            self.config.world_size, self.config.launch_id = distributed.world_size(), distributed.launch_id()
        if distributed.is_main() and not self.resuming:
            write_text(self.output / ckpt.CONFIG, self.config.to_json())
            atomic_write(self.output / ckpt.TOKENIZER, self.tokenizer.save)

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        self.tracker = tracking.tracker_for(self.config.train.log_to, self.output, distributed.is_main())
        init_from = self.config.train.init_from
        self.parent = finetune.load_parent(init_from) if init_from and not self.resuming else None
        self._set_up()
        if self.overwrite and distributed.is_main():
            self.replaced = ReplacedRun.set_aside(self.output)
        self.reporter.ready(self.model, self.config, self.best_valid_loss)
        # The training loss, through DistributedDataParallel under several processes.
        train_cfg = self.config.train
        self.loss_of = distributed.loss_function(
            self.model, self.device, self.config.model.output_layer == "adaptive", train_cfg.ar, train_cfg.tar
        )
        self._write_run_files()
        result = TrainResult(self.output, self.step, self.best_valid_loss, records=self.records)
        self.tracker.start(self.config)
        try:
            with self.stop:
                self._loop(result)
        finally:
            self.tracker.close()
        result.steps, result.best_valid_loss = self.step, self.best_valid_loss
        if distributed.is_main():
            model_card.write_model_card(self.output, sample=self.card_sample(self.output) if self.card_sample else None)
        return result

    def _loop(self, result: TrainResult) -> None:
        train_cfg = self.config.train
        self.started = self.last_save = now()
        self.clock = 0.0
        meter = Meter()
        bad_steps = 0
        if self._patience_spent():  # a resumed run that had stopped early
            self.reporter.message(f"the run stopped early at step {self.step}: raise --patience to train on")
            result.stopped_early = True
            return
        if (spent := self._limit_already_reached()) is not None:
            result.nothing_to_train = spent
            return
        self.reporter.start(None if math.isinf(self.total_steps) else self.total_steps, self.step)
        try:
            while self.step < self.total_steps:
                stop, out_of_time = self._agree_before_step()
                if stop is not None:
                    result.interrupted, result.stop_signal = True, stop
                    break
                if out_of_time:
                    break
                step_start = now()
                loss_sum, count = self._train_step()
                self.step += 1  # a skipped step counts too: its batch is passed over
                if math.isfinite(loss_sum):
                    bad_steps = 0
                    meter.add(loss_sum, count, now() - step_start)
                    self.reporter.step(self.step, loss_sum / max(count, 1), meter.recent_rate(), self._lr())
                else:
                    bad_steps += 1
                    self._skip_step(loss_sum, bad_steps)
                if self.step % train_cfg.eval_every == 0 or self.step == self.total_steps:
                    self._evaluate(meter, final=self.step == self.total_steps)
                    if self._patience_spent():
                        result.stopped_early = True
                        self.reporter.message(self._why_stopped_early())
                        break
                elif self._save_due():
                    self._save_resume_state()
        finally:
            self.reporter.stop()
        if self.evaluated_step != self.step:  # stopped by a signal or the clock between evaluations
            self._evaluate(meter, final=True)

    def _limit_already_reached(self) -> str | None:
        """Why a resumed run has nothing left to train, and how to give it more; None if it has."""
        budget = self.config.train.max_minutes
        if budget and self.elapsed_before >= 60 * budget:
            return (f"the run has spent its whole budget of {budget:g} minutes ({self.elapsed_before / 60:.1f} used): "
                    f"resume with a larger total, such as --max-minutes {2 * budget:g}, to train on")
        if self.step >= self.total_steps:
            return f"the run is already at step {self.step:,}: resume with a higher --max-steps or --epochs to train on"
        return None

    def _skip_step(self, loss: float, bad_steps: int) -> None:
        """Report the step whose loss was `loss` (not finite) as skipped; the MAX_BAD_STEPS-th in a row stops the run."""
        self.reporter.message(f"step {self.step}: loss is {loss}; step skipped (no update, on to the next batch)")
        if bad_steps >= MAX_BAD_STEPS:
            raise TextlstmError(
                f"{MAX_BAD_STEPS} steps in a row had a non-finite loss; stopped. "
                f"The last good checkpoint in {self.output} is intact: try a lower --lr"
            )

    def _why_stopped_early(self) -> str:
        budget = self.config.train.max_minutes
        spent = f" ({self.clock / (60 * budget):.0%} of the {budget:g} minutes)" if budget else ""
        decayed = ", with the learning rate past the middle of its decay," if self.config.train.schedule != "constant" else ""
        return (f"stopped early at step {self.step:,}{spent}: the validation loss has not improved in "
                f"{self.evals_since_best} evaluations{decayed} so more training would not help; the best weights are kept")

    def _patience_spent(self) -> bool:
        return self.evals_since_best >= self._patience() > 0

    def _patience(self) -> int:
        """--patience; left at auto, AUTO_PATIENCE evaluations or those of PATIENCE_SHARE of the run if more
        (by the evaluations so far and how far the run has come): a run evaluated often, as one with a
        small validation text is, sees the noise of many evaluations, not a trend."""
        patience = self.config.train.patience
        if patience is not None:
            return patience
        progress = decay_progress(self.step, self.total_steps, self.config.train, self.clock)
        evaluations = self.step / self.config.train.eval_every
        return max(AUTO_PATIENCE, math.ceil(PATIENCE_SHARE * evaluations / progress)) if progress > 0 else AUTO_PATIENCE

    def _lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _train_step(self) -> tuple[float, int]:
        epoch, index = divmod(self.step, len(self.batcher))
        lr = learning_rate(self.step, self.total_steps, self.config.train, self.clock)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        if isinstance(self.batcher, DocumentBatcher):
            inputs, targets, lengths = self.batcher.batch(index, epoch)
            state = None
        else:
            inputs, targets = self.batcher.batch(index)
            lengths = None
            state = None if index == 0 else self.lstm_state
        with autocast(self.precision, self.device):  # the backward pass runs outside it
            loss_sum, count, new_state, penalty = self.loss_of(inputs.to(self.device), targets.to(self.device), state, lengths)
        penalty_value = penalty.detach().double() if penalty is not None else torch.zeros((), dtype=torch.float64, device=count.device)
        totals = distributed.sum_across(torch.stack([loss_sum.detach().double(), count.double(), penalty_value]))
        loss_value, count_value, penalty_total = float(totals[0]), int(totals[1]), float(totals[2])
        if not math.isfinite(loss_value + penalty_total):  # skipped: weights, optimizer and the carried state stay as they were
            self.optimizer.zero_grad(set_to_none=True)
            return loss_value + penalty_total, count_value
        self.optimizer.zero_grad(set_to_none=True)
        # The mean over all processes' tokens: DDP averages the processes' gradients, hence * world size.
        # The AR/TAR penalty is a mean over this process's rows already: DDP's average makes it the mean of them all.
        backpropagated = loss_sum * (distributed.world_size() / max(count_value, 1))
        if penalty is not None:
            backpropagated = backpropagated + penalty
        self.loss_scaler.backward(backpropagated)
        self.loss_scaler.unscale(self.optimizer)
        if self.config.train.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip)
        # Not stepped: float16 gradients overflowed, and the loss scale is lowered. No bad step: the loss was finite.
        stepped = self.loss_scaler.step(self.optimizer)
        if self.average is not None and stepped:
            self.average.update(self.model)
        self.lstm_state = detach_state(new_state)
        return loss_value, count_value

    def _evaluate(self, meter: Meter, final: bool) -> None:
        """Evaluate, record, checkpoint. `final`: the last evaluation of this run (early stopping
        also makes it the last)."""
        train_cfg = self.config.train
        valid = self.splits["valid"]
        result = evaluate_split(
            self._evaluated_model(), valid.ids, valid.info,
            batch_size=min(train_cfg.batch_size, 32), seq_len=max(train_cfg.seq_len, 256),
            max_tokens=train_cfg.eval_tokens, device=self.device, precision=self.precision,
            documents=self.config.data.batching == "documents",
        )
        # Every process scores the same tokens with the same weights; process 0's figures decide for all.
        result = distributed.from_main(result)
        record = {
            "step": self.step,
            "epoch": self.batcher.passes if self.config.data.streaming else self.step / len(self.batcher),
            "train_loss": meter.mean_loss(),
            "valid_loss": result.loss,
            "valid_perplexity": result.perplexity,
            "valid_bits_per_token": result.bits_per_token,
            "valid_bits_per_char": result.bits_per_char,
            "valid_tokens": result.tokens,
            "tokens_per_sec": meter.rate(),
            "lr": self._lr(),
            "elapsed_sec": self._elapsed(),
            "world_size": distributed.world_size(),
        }
        meter.reset()
        improved = result.loss < self.best_valid_loss
        if improved:
            self.best_valid_loss = result.loss
            self.evals_since_best = 0
        elif decay_past_midpoint(self.step, self.total_steps, train_cfg, self.clock):
            self.evals_since_best += 1  # before, a miss is the noise of a high learning rate
        self.evaluated_step = self.step
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
        if self.sample is not None and every and distributed.is_main() and (self.step % every == 0 or record["final"]):
            self._write_sample()

    def _write_sample(self) -> None:
        """A sample from the evaluated weights, seeded by the run's seed and the step: training's random
        numbers are not drawn from, so a run samples or not and learns the same."""
        text = self.sample(self._evaluated_model(), self.tokenizer, tracking.sample_seed(self.config.train.seed, self.step))
        tracking.append_sample(self.output, self.step, text)
        self.reporter.sampled(self.step, text)
        self.tracker.sampled(self.step, text)

    def _save_due(self) -> bool:
        train_cfg = self.config.train
        if train_cfg.save_every and self.step % train_cfg.save_every == 0:
            return True
        return self.time_to_save

    def _save(self, record: dict, improved: bool) -> None:
        if distributed.is_main():
            if improved:  # a first model.safetensors is written by _save_resume_state in any case
                ckpt.save_weights(self._evaluated_model(), self.output / ckpt.BEST_WEIGHTS, self.step)
            with open(self.output / ckpt.METRICS, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        self._save_resume_state()
        if distributed.is_main():  # after the resume state, which the card does not hold up
            model_card.write_model_card(self.output)

    def _save_resume_state(self) -> None:
        """Write everything --resume needs in one atomic file (weights of the best model aside)."""
        self.last_save = now()
        every_process = rank_state.gather(self.lstm_state)  # random and LSTM states of all processes
        if distributed.is_main():
            if not (self.output / ckpt.BEST_WEIGHTS).exists():  # so generate works before the first evaluation
                ckpt.save_weights(self._evaluated_model(), self.output / ckpt.BEST_WEIGHTS, self.step)
            ckpt.save_trainer_state(self._trainer_state() | every_process, self.output / ckpt.TRAINER_STATE)
            if self.replaced is not None:  # the new run is saved: the one it replaces can go
                self.replaced.discard()
                self.replaced = None

    def put_back_replaced(self) -> None:
        """The run failed before its first checkpoint: the run it was to replace comes back."""
        if self.replaced is not None:
            self.replaced.put_back()
            self.replaced = None

    def _elapsed(self) -> float:
        return self.elapsed_before + now() - self.started

    def _agree_before_step(self) -> tuple[signal.Signals | None, bool]:
        """(the signal to stop for, None to train on; the max_minutes budget is spent); also sets
        `clock`, the elapsed time the schedule reads, and `time_to_save` (--save-every-minutes).

        Under several processes one exchange gives all the same answers, so they stop and save after
        the same step: a stop signal on any process, and one clock (the mean of theirs) for the rest.
        """
        minutes = self.config.train.save_every_minutes
        local = torch.tensor(
            [*self.stop.votes(), self._elapsed(), float(bool(minutes) and now() - self.last_save >= minutes * 60)],
            dtype=torch.float64,
        )
        if distributed.world_size() > 1:
            local = distributed.sum_across(local)
        *stop_votes, elapsed_sum, save_votes = local.tolist()
        self.clock = elapsed_sum / distributed.world_size()
        self.time_to_save = save_votes > 0
        budget = self.config.train.max_minutes
        return agreed(stop_votes), bool(budget) and self.clock >= 60 * budget

    def _trainer_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_valid_loss": self.best_valid_loss,
            "evals_since_best": self.evals_since_best,
            "evaluated_step": self.evaluated_step,
            "elapsed_sec": self._elapsed(),
            "stream": self.batcher.state_dict() if self.config.data.streaming else None,
            "average": self.average.state_dict() if self.average is not None else None,
            "loss_scaler": self.loss_scaler.state_dict(),
        }  # the random and LSTM states come from rank_state.gather


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
        return _train(config, output, resume, overwrite, reporter, checkpoints_root, train_overrides, sample, card_sample)


def _train(config, output, resume, overwrite, reporter, checkpoints_root, train_overrides, sample, card_sample) -> TrainResult:
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
            if created and output.is_dir() and not any(output.iterdir()):
                output.rmdir()  # failed before anything was saved: leave no empty run folder behind
        raise


def _config_to_resume(folder: Path, train_overrides: dict | None) -> RunConfig:
    if not (folder / ckpt.TRAINER_STATE).is_file():
        raise TextlstmError(f"cannot resume {folder}: no {ckpt.TRAINER_STATE} there")
    saved = ckpt.load_config(folder)
    saved.train = _resumed_train_config(saved.train, train_overrides or {})
    if distributed.is_main():
        check_writable(folder)
    return saved


def _resumed_train_config(saved: TrainConfig, overrides: dict) -> TrainConfig:
    """The saved settings with `overrides` on top. Limits given replace all the saved ones: a run
    that ended by the clock, resumed with max_steps, trains to that step."""
    if any(name in overrides for name in LIMITS):
        overrides = {name: None for name in LIMITS} | overrides
    return dataclasses.replace(saved, **overrides)
