"""The training step the speed benchmarks time (benchmarks/speed/training_step.py) is the trainer's own and runs."""

from __future__ import annotations

import json

import numpy as np
import torch

from benchmarks.speed.training_step import Shape, main, textlstm_step
from textlstm.training.step import TrainingStep


def test_the_benchmarked_step_is_the_trainers_training_step_and_trains_the_model():
    shape = Shape("tiny", vocab=40, embedding=8, hidden=16, layers=2, batch=4, seq_len=8)
    ids = np.random.default_rng(0).integers(2, 40, 2_000)
    step = textlstm_step(shape, ids)
    assert isinstance(step.train_step, TrainingStep)  # the step the trainer runs, not a copy of it
    model = step.train_step.model
    before = [p.detach().clone() for p in model.parameters()]
    outcomes = [step(), step()]
    assert step.steps == 2
    assert all(outcome.tokens == shape.tokens_per_step for outcome in outcomes)
    assert step.state is not None  # the LSTM state is carried to the next batch (stream batching)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_script_writes_tokens_per_second_of_each_precision_and_the_baseline(tmp_path):
    output = tmp_path / "steps.json"
    main(["--device", "cpu", "--shapes", "tiny", "--warmup", "1", "--steps", "2", "--output", str(output)])
    measured = json.loads(output.read_text())["shapes"]["tiny"]
    assert measured["errors"] == {}
    rates = measured["tokens_per_second"]
    assert set(rates) == {"baseline_float32", "textlstm_float32", "textlstm_bfloat16", "textlstm_float16"}
    assert all(rate > 0 for rate in rates.values())
