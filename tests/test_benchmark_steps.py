"""The training step the speed benchmarks time (benchmarks/bench_training_step.py) is the Trainer's own and runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_training_step import Shape, textlstm_step  # noqa: E402


def test_the_benchmarked_trainer_step_trains_the_model():
    shape = Shape("tiny", vocab=40, embedding=8, hidden=16, layers=2, batch=4, seq_len=8)
    ids = np.random.default_rng(0).integers(2, 40, 2_000)
    step = textlstm_step(shape, ids)
    trainer = step.__closure__[0].cell_contents  # the Trainer the step drives
    before = [p.detach().clone() for p in trainer.model.parameters()]
    step()
    step()
    assert trainer.step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
