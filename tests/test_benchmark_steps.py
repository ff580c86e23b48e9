"""The training step the speed benchmarks time (benchmarks/bench_training_step.py) is the Trainer's own and runs."""

from __future__ import annotations

import json
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


def test_the_script_writes_tokens_per_second_of_each_precision_and_the_baseline(tmp_path):
    from bench_training_step import main

    output = tmp_path / "steps.json"
    main(["--device", "cpu", "--shapes", "tiny", "--warmup", "1", "--steps", "2", "--output", str(output)])
    measured = json.loads(output.read_text())["shapes"]["tiny"]
    assert measured["errors"] == {}
    rates = measured["tokens_per_second"]
    assert set(rates) == {"baseline_float32", "textlstm_float32", "textlstm_bfloat16", "textlstm_float16"}
    assert all(rate > 0 for rate in rates.values())
