"""How fast this machine trains a model shape at a batch size: a few real training steps, timed.

The planner (budget_plan.py) asks before it chooses a model and batch for a time budget. Each probe
builds the shape with the run's vocabulary, optimizer, precision and threads, on the run's device, and
trains it on the run's first batches of training text (of the rows asked), read as the run's --batching reads them
(for a streamed corpus, its validation text as a stream): WARM_UP_STEPS untimed (allocations, oneDNN's kernel
choice), then steps until PROBE_SECONDS have passed or PROBE_STEPS were taken. A step is the trainer's own
(step.py: forward, backward, loss scaling, gradient clipping, the optimizer), with the run's dropouts
(TIMED_DROPOUT where they are left to the plan) and AR/TAR. Its rate counts the tokens a step scores
(document batches' padding is not). On a CUDA device it also records the memory the probe took
at its peak and what the device has free once the probe's memory is given back, so the planner can
tell whether a larger shape or batch would fit; a probe that runs out of memory, or a batch the text
has too few rows for, raises DoesNotFit. The weights are thrown away afterwards; the run seeds its
own. Under several processes only process 0 probes (its rows of each batch), and the others are
told its figures.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from textlstm.config import ModelConfig, TrainConfig
from textlstm.data.batchers import DocumentBatcher, StreamBatcher
from textlstm.errors import TextlstmError
from textlstm.hardware.precision import autocast
from textlstm.hardware.threads import use_threads
from textlstm.model.network import LSTMLanguageModel
from textlstm.tokens import PAD_ID
from textlstm.training.auto_settings import TUNED_LR
from textlstm.training.optimizer import build_optimizer
from textlstm.training.step import TrainingStep

WARM_UP_STEPS = 2  # untimed: the first steps build the kernels (oneDNN, CUDA) and allocate
PROBE_STEPS = 6
PROBE_SECONDS = 0.6  # per shape, after its warm-up step
TIMED_DROPOUT = 0.1  # the dropouts a shape is timed with when the run leaves them to the plan
now = time.perf_counter


@dataclass(frozen=True)
class Probe:
    """One shape's measured speed."""

    tokens_per_sec: float  # training tokens per second of this process
    eval_tokens_per_sec: float  # tokens per second of a forward pass without gradients, as evaluations run
    seconds: float  # what the probe itself took, warm-up included
    threads: int
    device: str = "cpu"
    peak_memory: int | None = None  # bytes the probe took on the device at its peak (CUDA only)
    free_memory: int | None = None  # bytes free on the device once the probe's were given back (CUDA only)


class DoesNotFit(TextlstmError):
    """A shape or batch this device or text cannot train: out of memory, or more rows than the text has."""


class SpeedProbe:
    """Times training steps of model shapes on `train_ids`, as the run `train` would take them:
    windows of whole documents, padded, with documents=True (--batching documents), else the stream."""

    def __init__(self, train: TrainConfig, train_ids, device: torch.device, precision: str, documents: bool = False):
        self.train, self.ids, self.device, self.precision = train, train_ids, device, precision
        self.documents = documents
        self.batchers: dict[int, StreamBatcher | DocumentBatcher] = {}  # by rows

    def _batcher(self, rows: int) -> StreamBatcher | DocumentBatcher:
        if rows not in self.batchers:
            try:
                if self.documents:
                    self.batchers[rows] = DocumentBatcher(self.ids, rows, self.train.seq_len, self.train.seed)
                else:
                    self.batchers[rows] = StreamBatcher(self.ids, rows, self.train.seq_len, 0, 1)
            except TextlstmError as error:  # more rows than the text has
                raise DoesNotFit(str(error)) from None
        return self.batchers[rows]

    def _batch(self, rows: int, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, targets and (document windows only) lengths of batch i of `rows` rows, on the device."""
        batcher = self._batcher(rows)
        batch = batcher.batch(i % len(batcher))
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        return inputs, targets, batch[2] if len(batch) == 3 else None

    def measure(self, model_config: ModelConfig, rows: int) -> Probe:
        """The speed of `model_config` trained on `rows` rows a step (this process's)."""
        started = now()
        random_state = torch.get_rng_state()
        self._batcher(rows)
        failure = None
        try:
            return self._measure(model_config, rows, started)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # out of memory, a device that fails
            what = f"timing {model_config.layers} x {model_config.hidden_size} at {rows} rows on {self.device} failed"
            out_of_memory = isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)
            failure = (DoesNotFit if out_of_memory else TextlstmError)(f"{what}: {error}")
        finally:
            torch.set_rng_state(random_state)
        # Raised here, once the failed step's tensors (held by the error's traceback) are gone.
        self._give_back_memory()
        raise failure

    def _measure(self, model_config: ModelConfig, rows: int, started: float) -> Probe:
        # Dropout left at auto is timed on: the masks cost up to a third of a step (measured: 2 x 192 timed
        # at 33,000 tokens/s without them trained at 21,000-24,000 with them), and a plan that turns it
        # off then runs a little faster than planned rather than slower.
        model_config = dataclasses.replace(
            model_config,
            dropout=TIMED_DROPOUT if model_config.dropout is None else model_config.dropout,
            recurrent_dropout=TIMED_DROPOUT
            if model_config.recurrent_dropout is None
            else model_config.recurrent_dropout,
        )
        threads = 1
        if self.device.type == "cpu":
            threads = use_threads(
                self.train.threads,
                model_config.embedding_size,
                model_config.hidden_size,
                model_config.layers,
                rows,
                self.precision,
            )
        held_before = self._memory_held()
        model = LSTMLanguageModel(model_config).to(self.device)
        step = TrainingStep(
            model, build_optimizer(model, self.train), self.train, self.device, self.precision, alone=True
        )
        state, steps, timed_start, timed_tokens = None, 0, None, 0
        lr = self.train.lr or TUNED_LR  # --lr auto: any rate, a step takes as long
        while steps < WARM_UP_STEPS + PROBE_STEPS:
            inputs, targets, lengths = self._batch(rows, steps)
            outcome = self._step(step, inputs, targets, None if lengths is not None else state, lengths, lr)
            state = outcome.state
            if steps >= WARM_UP_STEPS:
                timed_tokens += outcome.tokens
            if steps == WARM_UP_STEPS - 1:
                self._sync()
                timed_start = now()  # after the warm-up
            steps += 1
            if steps > WARM_UP_STEPS + 1 and now() - timed_start >= PROBE_SECONDS:
                break
        self._sync()
        rate = timed_tokens / (now() - timed_start)
        eval_rate = self._forward_rate(model, rows)
        peak = self._peak_memory(held_before)
        del model, step, state, outcome
        self._give_back_memory()
        return Probe(rate, eval_rate, now() - started, threads, str(self.device), peak, self._free_memory())

    def _step(self, step: TrainingStep, inputs, targets, state, lengths, lr: float):
        """One step of the trainer's, at the run's learning rate."""
        return step(inputs, targets, state, lengths, lr)

    @torch.inference_mode()
    def _forward_rate(self, model: LSTMLanguageModel, rows: int) -> float:
        """Tokens per second of the forward pass evaluations make (no gradients), on a batch of training rows."""
        model.eval()
        inputs, targets, lengths = self._batch(rows, 0)
        with autocast(self.precision, self.device):
            model(inputs, None, lengths)  # warm-up
            self._sync()
            started = now()
            model(inputs, None, lengths)
            self._sync()
        return int((targets != PAD_ID).sum()) / max(now() - started, 1e-9)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _memory_held(self) -> int | None:
        """Bytes of tensors on the device now, with its peak counter started again (CUDA only)."""
        if self.device.type != "cuda":
            return None
        torch.cuda.init()  # the allocator's counters exist once CUDA is initialized
        torch.cuda.reset_peak_memory_stats(self.device)
        return torch.cuda.memory_allocated(self.device)

    def _peak_memory(self, held_before: int | None) -> int | None:
        """Bytes the probe added on the device at its peak (CUDA only)."""
        if held_before is None:
            return None
        return torch.cuda.max_memory_allocated(self.device) - held_before

    def _give_back_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _free_memory(self) -> int | None:
        """Bytes free on the device as its driver counts them (CUDA only)."""
        return torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
