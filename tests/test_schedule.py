import math

import pytest

from textlstm.config import TrainConfig
from textlstm.training.schedule import learning_rate

LR, MIN_RATIO = 0.01, 0.1


def config(**overrides) -> TrainConfig:
    settings = dict(lr=LR, min_lr_ratio=MIN_RATIO, warmup_steps=10, max_steps=110)
    settings.update(overrides)
    return TrainConfig(**settings)


def test_warmup_rises_linearly_to_the_peak():
    rates = [learning_rate(step, 110, config()) for step in range(10)]
    assert rates == pytest.approx([LR * (step + 1) / 10 for step in range(10)])
    assert rates[-1] == pytest.approx(LR)


def test_cosine_falls_from_the_peak_to_the_floor_at_the_last_step():
    assert learning_rate(10, 110, config()) == pytest.approx(LR)
    assert learning_rate(60, 110, config()) == pytest.approx(LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5))
    assert learning_rate(110, 110, config()) == pytest.approx(LR * MIN_RATIO)
    rates = [learning_rate(step, 110, config()) for step in range(10, 111)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_constant_holds_the_peak_after_warmup():
    assert learning_rate(5, 110, config(schedule="constant")) == pytest.approx(LR * 6 / 10)
    assert {learning_rate(step, 110, config(schedule="constant")) for step in (10, 50, 109)} == {LR}


def test_no_warmup_starts_at_the_peak():
    assert learning_rate(0, 100, config(warmup_steps=0)) == pytest.approx(LR)


def test_with_max_minutes_the_nearer_limit_drives_the_decay():
    timed = config(max_minutes=10.0)
    halfway_by_clock = learning_rate(20, 110, timed, elapsed_sec=300)  # step 20 is 10% of the steps
    assert halfway_by_clock == pytest.approx(LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5))
    assert learning_rate(60, 110, timed, elapsed_sec=30) == pytest.approx(learning_rate(60, 110, config()))
    assert learning_rate(20, 110, timed, elapsed_sec=900) == pytest.approx(LR * MIN_RATIO)  # past the budget
    at_quarter = LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(10, 110, timed, elapsed_sec=150) == pytest.approx(at_quarter)
