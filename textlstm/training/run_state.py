"""What changes while a run trains, in one object that is saved and restored whole.

The weights, the optimizer, the weight average, the loss scale and a streamed corpus's position
are saved beside it in the same trainer_state.pt (each by its owner's state_dict); everything else
a resumed run needs to go on exactly as if it had not stopped is here: the step, the best
validation loss and the patience spent, the time budget's clock, the LSTM state carried across
batches, and every process's random streams (rank_state.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from textlstm.model.network import State
from textlstm.training import rank_state


@dataclass
class RunState:
    step: int = 0  # steps taken (a skipped step counts: its batch is passed over)
    best_valid_loss: float = math.inf
    evals_since_best: int = 0  # evaluations without improvement past the schedule's midpoint
    evaluated_step: int = -1  # the step of the last evaluation
    spent_before: float = 0.0  # seconds of the budget spent before this session: the plan's timing, earlier sessions
    clock: float = 0.0  # the budget's seconds as all processes agreed before the current step
    lstm_state: State | None = None  # carried from one batch to the next (stream batching)
    started: float = 0.0  # when this session's clock started, on the trainer's clock (trainer.now)

    def start_clock(self, at: float) -> None:
        self.started, self.clock = at, self.spent_before

    def elapsed(self, at: float) -> float:
        """Seconds of the budget spent by `at`, this session's included."""
        return self.spent_before + at - self.started

    def to_saved(self, at: float) -> dict:
        """The entries of trainer_state.pt. Every process must call this: the random and LSTM states of
        all processes are gathered into it."""
        return {
            "step": self.step,
            "best_valid_loss": self.best_valid_loss,
            "evals_since_best": self.evals_since_best,
            "evaluated_step": self.evaluated_step,
            "elapsed_sec": self.elapsed(at),
        } | rank_state.gather(self.lstm_state)

    @classmethod
    def from_saved(cls, saved: dict, device: torch.device, rows_per_process: int) -> RunState:
        """The state a run was saved in; this process's random streams are set from it."""
        return cls(
            step=int(saved["step"]),
            best_valid_loss=float(saved["best_valid_loss"]),
            evals_since_best=int(saved["evals_since_best"]),
            evaluated_step=int(saved.get("evaluated_step", -1)),
            spent_before=float(saved["elapsed_sec"]),
            lstm_state=rank_state.restore(saved, device, rows_per_process),
        )
