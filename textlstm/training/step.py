"""One training step: the forward pass in the run's precision, the loss summed over every process,
the backward pass (with float16's loss scale), gradient clipping, the optimizer and the weight average.

The trainer takes one for each batch; the speed probe times the same step on candidate shapes, so
the plan's speeds are the trainer's own. A step whose loss is not finite changes nothing: no update,
and the LSTM state carried into it is what the next step gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from textlstm.config import TrainConfig
from textlstm.hardware.precision import autocast
from textlstm.model.network import LSTMLanguageModel, State, detach_state
from textlstm.training import distributed
from textlstm.training.loss_scaling import LossScaler
from textlstm.training.weight_average import WeightAverage


@dataclass(frozen=True)
class StepOutcome:
    loss_sum: float  # summed over the tokens of every process; not finite: the step was skipped
    tokens: int  # the tokens scored, over every process
    state: State | None  # the LSTM state to carry into the next batch, detached


class TrainingStep:
    """Trains `model` one batch at a time. alone: this process steps by itself even when several
    processes run (the speed probe on process 0); otherwise DDP averages the gradients of all."""

    def __init__(
        self,
        model: LSTMLanguageModel,
        optimizer: torch.optim.Optimizer,
        train: TrainConfig,
        device: torch.device,
        precision: str,
        average: WeightAverage | None = None,
        alone: bool = False,
    ):
        self.model, self.optimizer, self.train = model, optimizer, train
        self.device, self.precision, self.average = device, precision, average
        self.processes = 1 if alone else distributed.world_size()
        adaptive = model.config.output_layer == "adaptive"
        if alone:
            self.loss_of = lambda *args: model.regularized_loss(*args, train.ar, train.tar)
        else:
            self.loss_of = distributed.loss_function(model, device, adaptive, train.ar, train.tar)
        self.loss_scaler = LossScaler(precision, device)

    def __call__(
        self, inputs: torch.Tensor, targets: torch.Tensor, state: State | None, lengths: torch.Tensor | None, lr: float
    ) -> StepOutcome:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        inputs, targets = inputs.to(self.device), targets.to(self.device)
        with autocast(self.precision, self.device):  # the backward pass runs outside it
            loss_sum, count, new_state, penalty = self.loss_of(inputs, targets, state, lengths)
        penalty_value = (
            penalty.detach().double()
            if penalty is not None
            else torch.zeros((), dtype=torch.float64, device=count.device)
        )
        totals = torch.stack([loss_sum.detach().double(), count.double(), penalty_value])
        if self.processes > 1:
            totals = distributed.sum_across(totals)
        loss_value, tokens, penalty_total = float(totals[0]), int(totals[1]), float(totals[2])
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss_value + penalty_total):  # skipped: weights, optimizer and state stay as they were
            return StepOutcome(loss_value + penalty_total, tokens, state)
        # The mean over all processes' tokens: DDP averages the processes' gradients, hence * processes.
        # The AR/TAR penalty is a mean over this process's rows already: DDP's average makes it the mean of all.
        backpropagated = loss_sum * (self.processes / max(tokens, 1))
        if penalty is not None:
            backpropagated = backpropagated + penalty
        self.loss_scaler.backward(backpropagated)
        self.loss_scaler.unscale(self.optimizer)
        if self.train.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.clip)
        # Not stepped: float16 gradients overflowed, and the loss scale is lowered. No bad step: the loss was finite.
        stepped = self.loss_scaler.step(self.optimizer)
        if self.average is not None and stepped:
            self.average.update(self.model)
        return StepOutcome(loss_value, tokens, detach_state(new_state))
