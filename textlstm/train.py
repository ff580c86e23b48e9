"""The training loop: AdamW, gradient clipping, a warmup + cosine schedule, periodic evaluation,
best and last checkpoints, early stopping, exact resume and a clean stop on Ctrl-C.

Nothing here assumes a single process: each process reads its own rows of the data
(`distributed.rank()`), losses are summed across processes, and only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from textlstm import checkpoint as ckpt
from textlstm import distributed, finetune
from textlstm.config import ModelConfig, RunConfig, TrainConfig
from textlstm.data import DocumentBatcher, StreamBatcher, prepare
from textlstm.device import resolve_device
from textlstm.errors import TextlstmError
from textlstm.evaluate import evaluate_split
from textlstm.model import LSTMLanguageModel, detach_state
from textlstm.precision import autocast
from textlstm.streaming import StreamingBatcher

MAX_BAD_STEPS = 5  # consecutive non-finite losses before training gives up


class Reporter:
    """What the loop tells the outside world; the CLI draws it, the Python API ignores it."""

    def message(self, text: str) -> None: ...
    def ready(self, model: LSTMLanguageModel, config: RunConfig, best_valid_loss: float) -> None: ...
    def start(self, total_steps: int, first_step: int) -> None: ...
    def step(self, step: int, loss: float, tokens_per_sec: float, lr: float) -> None: ...
    def evaluated(self, record: dict) -> None: ...
    def stop(self) -> None: ...


@dataclass
class TrainResult:
    output: Path
    steps: int
    best_valid_loss: float
    interrupted: bool = False
    stopped_early: bool = False
    records: list[dict] = field(default_factory=list)


def learning_rate(step: int, total_steps: int, config: TrainConfig, elapsed_sec: float = 0.0) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.max_minutes:  # whichever limit is nearer drives the decay
        progress = max(progress, elapsed_sec / (60 * config.max_minutes))
    progress = min(1.0, progress)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def new_run_folder(root: Path, corpus_name: str, tokenizer: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{corpus_name}-{tokenizer}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse to mix a new run into a folder that holds other files; check it can be written."""
    if output.exists() and not output.is_dir():
        raise TextlstmError(f"output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            what = "a textlstm run" if (output / ckpt.CONFIG).exists() else "files"
            raise TextlstmError(
                f"output folder {output} already holds {what}: use --resume {output} to continue it, "
                "--overwrite to replace it, or another --output"
            )
        for name in (ckpt.CONFIG, ckpt.TOKENIZER, ckpt.BEST_WEIGHTS, ckpt.TRAINER_STATE, ckpt.METRICS):
            (output / name).unlink(missing_ok=True)
    check_writable(output)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as error:
        raise TextlstmError(f"cannot write checkpoints to {folder}: {error.strerror or error}") from None


class _StopFlag:
    """Set by the first Ctrl-C; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    def __init__(self, config: RunConfig, output: Path, reporter: Reporter | None = None, resume: bool = False):
        self.config = config
        self.output = Path(output)
        self.reporter = reporter or Reporter()
        self.resuming = resume
        self.device = resolve_device(config.train.device)
        self.stop = _StopFlag()

    # ------------------------------------------------------------------ setup

    def _load_data(self) -> None:
        data = self.config.data
        reused = None  # a new run trains its tokenizer on the corpus
        if self.resuming:
            reused = ckpt.load_tokenizer(self.output)
        elif self.parent is not None:
            reused = self.parent.tokenizer()
        prepared = prepare(data, reused, report=self.reporter.message)
        self.corpus, self.tokenizer, self.splits = prepared.corpus, prepared.tokenizer, prepared.splits
        self.stream = prepared.stream
        if self.parent is not None and "train" in self.splits and (note := finetune.unseen_note(self.tokenizer, data.tokenizer, self.splits["train"].ids)):
            self.reporter.message(note)
        if data.turns is None and self.corpus.turns is not None:  # recorded in config.json for chat
            self.config.data = dataclasses.replace(data, turns=self.corpus.turns)

    def _build(self) -> None:
        train_cfg = self.config.train
        if self.config.model.vocab_size == 0:
            self.config.model = dataclasses.replace(self.config.model, vocab_size=self.tokenizer.vocab_size)
        elif self.config.model.vocab_size != self.tokenizer.vocab_size:
            raise TextlstmError("the tokenizer does not match the model's vocabulary size")
        torch.manual_seed(train_cfg.seed)
        self.model = LSTMLanguageModel(self.config.model).to(self.device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay, betas=(0.9, 0.99)
        )
        rank, world = distributed.rank(), distributed.world_size()
        if self.config.data.streaming:
            if train_cfg.epochs:
                raise TextlstmError("--epochs needs a corpus of known length: with --streaming give --max-steps")
            self.batcher = StreamingBatcher(self.stream, train_cfg.batch_size, train_cfg.seq_len)
        elif self.config.data.batching == "documents":
            self.batcher = DocumentBatcher(self.splits["train"].ids, train_cfg.batch_size, train_cfg.seq_len, train_cfg.seed, rank, world)
        else:
            self.batcher = StreamBatcher(self.splits["train"].ids, train_cfg.batch_size, train_cfg.seq_len, rank, world)
        steps_per_epoch = len(self.batcher)
        limits = [n for n in (train_cfg.max_steps, train_cfg.epochs and train_cfg.epochs * steps_per_epoch) if n]
        self.total_steps = min(limits)
        self.step = 0
        self.lstm_state = None
        self.best_valid_loss = math.inf
        self.evals_since_best = 0
        self.elapsed_before = 0.0
        self.records: list[dict] = []

    def _resume(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = int(state["step"])
            self.best_valid_loss = float(state["best_valid_loss"])
            self.evals_since_best = int(state["evals_since_best"])
            self.elapsed_before = float(state["elapsed_sec"])
            torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            if state.get("lstm_state") is not None:
                self.lstm_state = tuple(t.to(self.device) for t in state["lstm_state"])
            if self.config.data.streaming:
                self.batcher.load_state_dict(state["stream"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise TextlstmError(f"cannot resume from {self.output}: trainer state does not fit this run ({error})") from None
        self.reporter.message(f"resuming {self.output} at step {self.step}")

    def _write_run_files(self) -> None:
        if distributed.is_main() and not self.resuming:
            ckpt.write_text(self.output / ckpt.CONFIG, self.config.to_json())
            ckpt.atomic_write(self.output / ckpt.TOKENIZER, self.tokenizer.save)

    # ------------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        # A resume state that cannot be loaded is reported before any time goes into the data.
        saved_state = ckpt.load_trainer_state(self.output / ckpt.TRAINER_STATE) if self.resuming else None
        init_from = self.config.train.init_from
        self.parent = finetune.load_parent(init_from) if init_from and not self.resuming else None
        self._load_data()
        self._build()
        if self.parent is not None:
            step = self.parent.load_weights(self.model)
            self.reporter.message(f"fine-tuning {self.parent.folder} (its weights from step {step:,}): new optimizer and schedule")
        if saved_state is not None:
            self._resume(saved_state)
        self.reporter.ready(self.model, self.config, self.best_valid_loss)
        self._write_run_files()
        result = TrainResult(self.output, self.step, self.best_valid_loss, records=self.records)
        with self.stop:
            self._loop(result)
        result.steps, result.best_valid_loss = self.step, self.best_valid_loss
        return result

    def _loop(self, result: TrainResult) -> None:
        train_cfg = self.config.train
        self.started = self.last_save = time.perf_counter()
        self.clock = 0.0
        window = _Window()
        bad_steps = 0
        self.reporter.start(self.total_steps, self.step)
        try:
            while self.step < self.total_steps:
                if self.stop.requested:
                    result.interrupted = True
                    break
                if self._out_of_time():
                    break
                step_start = time.perf_counter()
                loss_sum, count = self._train_step()
                if not math.isfinite(loss_sum):
                    bad_steps += 1
                    self.reporter.message(f"step {self.step + 1}: loss is {loss_sum}; step skipped")
                    if bad_steps >= MAX_BAD_STEPS:
                        raise TextlstmError(
                            f"{MAX_BAD_STEPS} steps in a row had a non-finite loss; stopped. "
                            f"The last good checkpoint in {self.output} is intact: try a lower --lr"
                        )
                    continue
                bad_steps = 0
                self.step += 1
                window.add(loss_sum, count, time.perf_counter() - step_start)
                self.reporter.step(self.step, loss_sum / max(count, 1), window.recent_rate(), self._lr())
                if self.step % train_cfg.eval_every == 0 and self.step < self.total_steps:
                    if self._evaluate(window, final=False):
                        result.stopped_early = True
                        break
                elif self._save_due():
                    self._save_resume_state()
        finally:
            self.reporter.stop()
        self._evaluate(window, final=True)

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
        with autocast(self.config.train.precision, self.device):  # the backward pass runs outside it
            loss_sum, count, new_state = self.model.loss(inputs.to(self.device), targets.to(self.device), state, lengths)
        totals = distributed.sum_across(torch.stack([loss_sum.detach().double(), count.double()]))
        loss_value, count_value = float(totals[0]), int(totals[1])
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            self.lstm_state = None
            return loss_value, count_value
        self.optimizer.zero_grad(set_to_none=True)
        (loss_sum / count.clamp(min=1)).backward()
        if self.config.train.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip)
        self.optimizer.step()
        self.lstm_state = detach_state(new_state)
        return loss_value, count_value

    def _evaluate(self, window: "_Window", final: bool) -> bool:
        """Evaluate, record, checkpoint. True when early stopping says to stop."""
        train_cfg = self.config.train
        valid = self.splits["valid"]
        result = evaluate_split(
            self.model, valid.ids, valid.info,
            batch_size=min(train_cfg.batch_size, 32), seq_len=max(train_cfg.seq_len, 256),
            max_tokens=train_cfg.eval_tokens, device=self.device, precision=train_cfg.precision,
            documents=self.config.data.batching == "documents",
        )
        record = {
            "step": self.step,
            "epoch": self.batcher.passes if self.config.data.streaming else self.step / len(self.batcher),
            "train_loss": window.mean_loss(),
            "valid_loss": result.loss,
            "valid_perplexity": result.perplexity,
            "valid_bits_per_token": result.bits_per_token,
            "valid_bits_per_char": result.bits_per_char,
            "valid_tokens": result.tokens,
            "tokens_per_sec": window.rate(),
            "lr": self._lr(),
            "elapsed_sec": self._elapsed(),
            "final": final,
        }
        window.reset()
        improved = result.loss < self.best_valid_loss
        if improved:
            self.best_valid_loss = result.loss
            self.evals_since_best = 0
        else:
            self.evals_since_best += 1
        self.records.append(record)
        self._save(record, improved)
        self.reporter.evaluated(record)
        patience = train_cfg.patience
        return bool(patience) and self.evals_since_best >= patience

    def _save_due(self) -> bool:
        train_cfg = self.config.train
        if train_cfg.save_every and self.step % train_cfg.save_every == 0:
            return True
        minutes = train_cfg.save_every_minutes
        return bool(minutes) and time.perf_counter() - self.last_save >= minutes * 60

    def _save(self, record: dict, improved: bool) -> None:
        if distributed.is_main():
            if improved:  # a first model.safetensors is written by _save_resume_state in any case
                ckpt.save_weights(self.model, self.output / ckpt.BEST_WEIGHTS, self.step)
            with open(self.output / ckpt.METRICS, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        self._save_resume_state()

    def _save_resume_state(self) -> None:
        """Write everything --resume needs in one atomic file (weights of the best model aside)."""
        self.last_save = time.perf_counter()
        if distributed.is_main():
            if not (self.output / ckpt.BEST_WEIGHTS).exists():  # so generate works before the first evaluation
                ckpt.save_weights(self.model, self.output / ckpt.BEST_WEIGHTS, self.step)
            ckpt.save_trainer_state(self._trainer_state(), self.output / ckpt.TRAINER_STATE)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def _out_of_time(self) -> bool:
        """Whether the max_minutes budget is spent; also sets `clock`, the elapsed time the schedule reads.

        The processes share one clock (the mean of theirs), so they stop at the same step and use the same rate.
        """
        budget = self.config.train.max_minutes
        if not budget:
            return False
        elapsed = torch.tensor(self._elapsed(), dtype=torch.float64, device=self.device)
        self.clock = float(distributed.sum_across(elapsed)) / distributed.world_size()
        return self.clock >= 60 * budget

    def _trainer_state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_valid_loss": self.best_valid_loss,
            "evals_since_best": self.evals_since_best,
            "elapsed_sec": self._elapsed(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "lstm_state": None if self.lstm_state is None else tuple(t.cpu() for t in self.lstm_state),
            "stream": self.batcher.state_dict() if self.config.data.streaming else None,
        }


class _Window:
    """Training loss and throughput since the last evaluation, and over the last few steps."""

    def __init__(self):
        self.reset()
        self.recent: list[tuple[int, float]] = []

    def reset(self) -> None:
        self.loss_sum, self.tokens, self.seconds = 0.0, 0, 0.0

    def add(self, loss_sum: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss_sum
        self.tokens += tokens
        self.seconds += seconds
        self.recent = (self.recent + [(tokens, seconds)])[-20:]

    def mean_loss(self) -> float | None:
        return self.loss_sum / self.tokens if self.tokens else None

    def rate(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None

    def recent_rate(self) -> float:
        seconds = sum(s for _, s in self.recent)
        return sum(t for t, _ in self.recent) / seconds if seconds else 0.0


def train(
    config: RunConfig | None = None,
    output: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    reporter: Reporter | None = None,
    checkpoints_root: str | Path = "checkpoints",
    train_overrides: dict | None = None,
) -> TrainResult:
    """Train a model as `config` says; return where it was saved and how it went.

    resume: a checkpoint folder to continue. Its own config.json is used, with `train_overrides`
    (TrainConfig fields such as max_steps or epochs) applied on top.
    config.train.init_from: a checkpoint folder to fine-tune. Its model shape, tokenizer and weights
    are used; of config.model only dropout and recurrent_dropout apply.
    """
    if resume is not None:
        folder = Path(resume)
        if not (folder / ckpt.TRAINER_STATE).is_file():
            raise TextlstmError(f"cannot resume {folder}: no {ckpt.TRAINER_STATE} there")
        saved = ckpt.load_config(folder)
        saved.train = dataclasses.replace(saved.train, **(train_overrides or {}))
        check_writable(folder)
        return Trainer(saved, folder, reporter, resume=True).run()
    config = config or RunConfig(model=ModelConfig())
    if config.train.init_from:
        config = finetune.inherit(config, finetune.load_parent(config.train.init_from))
    if output is None:
        output = new_run_folder(Path(checkpoints_root), _corpus_label(config), config.data.tokenizer)
    output = Path(output)
    created = not output.exists()
    prepare_output(output, overwrite)
    try:
        return Trainer(config, output, reporter).run()
    except BaseException:
        if created and output.is_dir() and not any(output.iterdir()):
            output.rmdir()  # failed before anything was saved: leave no empty run folder behind
        raise


def _corpus_label(config: RunConfig) -> str:
    name = config.data.dataset or "pydoc"
    label = Path(name.rstrip("/")).stem if "/" not in name or Path(name).exists() else name.replace("/", "_")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:40] or "corpus"
