"""How fast this machine trains a model shape: a few real training steps, timed.

The planner (budget_plan.py) asks before it chooses a model for a time budget. Each probe builds
the shape with the run's vocabulary, optimizer, precision and threads, on the run's device, and
trains it on the run's first batches of training text, read as the run's --batching reads them
(for a streamed corpus, its validation text as a stream): WARM_UP_STEPS untimed (allocations, oneDNN's kernel
choice), then steps until PROBE_SECONDS have passed or PROBE_STEPS were taken. A step is the trainer's own
(step.py: forward, backward, loss scaling, gradient clipping, the optimizer), with the run's dropouts
(TIMED_DROPOUT where they are left to the plan) and AR/TAR. Its rate counts the tokens a step scores
(document batches' padding is not). The weights are thrown away afterwards; the run seeds
its own. Under several processes only process 0 probes (its rows of each batch), and the others
are told its figures.
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


class SpeedProbe:
    """Times training steps of model shapes on `train_ids`, as the run `train` would take them:
    windows of whole documents, padded, with documents=True (--batching documents), else the stream."""

    def __init__(self, train: TrainConfig, train_ids, rows: int, device: torch.device, precision: str, documents: bool = False):
        self.train, self.rows, self.device, self.precision = train, rows, device, precision
        if documents:
            self.batcher = DocumentBatcher(train_ids, rows, train.seq_len, train.seed)
        else:
            self.batcher = StreamBatcher(train_ids, rows, train.seq_len, 0, 1)

    def _batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Inputs, targets and (document windows only) lengths of batch i, on the device."""
        batch = self.batcher.batch(i % len(self.batcher))
        inputs, targets = batch[0].to(self.device), batch[1].to(self.device)
        return inputs, targets, batch[2] if len(batch) == 3 else None

    def measure(self, model_config: ModelConfig) -> Probe:
        started = now()
        random_state = torch.get_rng_state()
        try:
            return self._measure(model_config, started)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:  # out of memory, a device that fails
            raise TextlstmError(f"timing {model_config.layers} x {model_config.hidden_size} on {self.device} failed: {error}") from None
        finally:
            torch.set_rng_state(random_state)

    def _measure(self, model_config: ModelConfig, started: float) -> Probe:
        # Dropout left at auto is timed on: the masks cost up to a third of a step (measured: 2 x 192 timed
        # at 33,000 tokens/s without them trained at 21,000-24,000 with them), and a plan that turns it
        # off then runs a little faster than planned rather than slower.
        model_config = dataclasses.replace(
            model_config,
            dropout=TIMED_DROPOUT if model_config.dropout is None else model_config.dropout,
            recurrent_dropout=TIMED_DROPOUT if model_config.recurrent_dropout is None else model_config.recurrent_dropout,
        )
        threads = 1
        if self.device.type == "cpu":
            threads = use_threads(self.train.threads, model_config.embedding_size, model_config.hidden_size,
                                  model_config.layers, self.rows, self.precision)
        model = LSTMLanguageModel(model_config).to(self.device)
        step = TrainingStep(model, build_optimizer(model, self.train), self.train, self.device, self.precision,
                            alone=True)
        state, steps, timed_start, timed_tokens = None, 0, None, 0
        while steps < WARM_UP_STEPS + PROBE_STEPS:
            inputs, targets, lengths = self._batch(steps)
            outcome = self._step(step, inputs, targets, None if lengths is not None else state, lengths)
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
        eval_rate = self._forward_rate(model)
        return Probe(rate, eval_rate, now() - started, threads, str(self.device))

    def _step(self, step: TrainingStep, inputs, targets, state, lengths):
        """One step of the trainer's, at the run's learning rate."""
        return step(inputs, targets, state, lengths, self.train.lr)

    @torch.inference_mode()
    def _forward_rate(self, model: LSTMLanguageModel) -> float:
        """Tokens per second of the forward pass evaluations make (no gradients), on a batch of training rows."""
        model.eval()
        inputs, targets, lengths = self._batch(0)
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
