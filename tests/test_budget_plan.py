"""The planner: a time budget is measured on this machine, then spent on the shape the size rule picks."""

import json

import pytest
import torch

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.training import budget_plan
from textlstm.training.budget_plan import CANDIDATE_SHAPES, DEFAULT_SHAPE, plan_run, predicted_loss
from textlstm.training.speed_probe import Probe

from conftest import TINY_MODEL

TRAIN_TOKENS = 2_000_000


def config_for(**settings) -> RunConfig:
    model = {k: v for k, v in settings.items() if k in ModelConfig.__dataclass_fields__}
    train = {k: v for k, v in settings.items() if k in TrainConfig.__dataclass_fields__}
    return RunConfig(model=ModelConfig(**model), data=DataConfig(), train=TrainConfig(**train))


class Machine:
    """A measure() that answers a speed inversely proportional to the LSTM's work, and records what it was asked."""

    def __init__(self, multiply_adds_per_second: float = 20e9):
        self.speed, self.asked = multiply_adds_per_second, []

    def __call__(self, model: ModelConfig) -> Probe:
        self.asked.append((model.layers, model.hidden_size, model.embedding_size))
        work = budget_plan.lstm_weights(model.layers, model.hidden_size, model.embedding_size)
        return Probe(self.speed / work, 4 * self.speed / work, 0.5, 1)


def best_shape_by_rule(speed: float, seconds: float) -> tuple[int, int, int]:
    shapes = [budget_plan._shape(ModelConfig(), layers, hidden) for layers, hidden in CANDIDATE_SHAPES]
    return min(shapes, key=lambda s: predicted_loss(s, speed / budget_plan.lstm_weights(*s) * seconds, TRAIN_TOKENS))


def test_a_longer_budget_or_a_faster_machine_plans_a_model_at_least_as_large():
    hidden = []
    for minutes, speed in ((2, 5e9), (15, 20e9), (60, 20e9), (60, 200e9)):
        machine = Machine(speed)
        plan = plan_run(config_for(max_minutes=minutes), TRAIN_TOKENS, 50_000, machine)
        hidden.append(plan.config.model.hidden_size)
    assert hidden == sorted(hidden) and hidden[0] < hidden[-1]


def test_the_plan_takes_the_shape_the_rule_predicts_best_and_records_what_it_measured():
    machine = Machine(20e9)
    plan = plan_run(config_for(max_minutes=15), TRAIN_TOKENS, 50_000, machine)
    chosen = (plan.config.model.layers, plan.config.model.hidden_size, plan.config.model.embedding_size)
    seconds = (15 * 60 - plan.seconds) * budget_plan.TIME_FOR_EVALUATIONS
    assert chosen == best_shape_by_rule(20e9, seconds)
    assert machine.asked[0] == (2, 192, 48) and chosen in machine.asked  # timed from the smallest up
    assert plan.seconds == pytest.approx(0.5 * len(machine.asked))
    assert plan.config.plan["chosen"] == list(chosen) and len(plan.config.plan["tokens_per_sec"]) == len(machine.asked)
    assert plan.lines[0].startswith("measured in ") and "tokens/s" in plan.lines[0]
    assert any(line.startswith(f"model: 2 x {chosen[1]}, embedding {chosen[2]} (auto: ") for line in plan.lines)
    # The dropouts follow the epochs of the chosen shape's measured tokens.
    assert plan.config.plan["epochs"] == pytest.approx(plan.config.plan["tokens"] / TRAIN_TOKENS, rel=0.01)


def test_timing_stops_once_a_larger_shape_predicts_worse():
    machine = Machine(2e9)  # slow: the smallest shapes win, the large ones are never timed
    plan_run(config_for(max_minutes=2), TRAIN_TOKENS, 50_000, machine)
    assert len(machine.asked) < len(CANDIDATE_SHAPES)


def test_the_sizes_given_are_kept_and_only_the_rest_is_planned():
    machine = Machine(20e9)
    plan = plan_run(config_for(max_minutes=15, hidden_size=300), TRAIN_TOKENS, 50_000, machine)
    assert plan.config.model.hidden_size == 300 and plan.config.model.embedding_size == 75
    assert machine.asked == [(2, 300, 75)]  # every candidate is the same shape once the size is given
    plan = plan_run(config_for(max_minutes=15, hidden_size=300, embedding_size=10, layers=3, dropout=0.2,
                               recurrent_dropout=0.0, weight_decay=0.0, eval_every=7), TRAIN_TOKENS, 50_000, Machine())
    assert (plan.config.model.layers, plan.config.model.embedding_size, plan.config.train.eval_every) == (3, 10, 7)
    assert plan.config.model.dropout == 0.2


def test_without_a_time_budget_nothing_is_timed_and_the_default_shape_is_used():
    def refuse(model):
        raise AssertionError("nothing should be timed")

    plan = plan_run(config_for(max_steps=100), TRAIN_TOKENS, 50_000, refuse)
    assert (plan.config.model.layers, plan.config.model.hidden_size) == DEFAULT_SHAPE
    assert plan.config.model.embedding_size == DEFAULT_SHAPE[1] // 4 and plan.config.train.eval_every == 500
    assert plan.config.plan is None and plan.seconds == 0


def test_evaluations_are_spaced_to_take_a_small_share_of_the_budget():
    machine = Machine(20e9)
    plan = plan_run(config_for(max_minutes=15), TRAIN_TOKENS, 100_000, machine)
    train = plan.config.train
    chosen = (plan.config.model.layers, plan.config.model.hidden_size, plan.config.model.embedding_size)
    probe = machine(ModelConfig(layers=chosen[0], hidden_size=chosen[1], embedding_size=chosen[2]))
    steps = plan.config.plan["tokens"] / (train.batch_size * train.seq_len)
    evaluations = steps / train.eval_every
    assert budget_plan.MIN_EVALUATIONS <= round(evaluations) <= budget_plan.MAX_EVALUATIONS + 1
    spent = evaluations * 100_000 / probe.eval_tokens_per_sec
    assert spent <= 1.2 * budget_plan.EVAL_SHARE * 15 * 60 or round(evaluations) <= budget_plan.MIN_EVALUATIONS


def test_repeated_epochs_count_less_than_new_text():
    assert budget_plan.effective_tokens(1000, 2000) == 1000
    assert 2000 < budget_plan.effective_tokens(10_000, 2000) < 10_000
    assert budget_plan.effective_tokens(1e9, 2000) < 2000 * (1 + budget_plan.FIT_R) + 1


def test_the_probe_times_real_steps_and_leaves_the_random_state_as_it_was():
    from textlstm.training.speed_probe import SpeedProbe

    ids = torch.randint(0, 50, (5000,)).numpy()
    probe = SpeedProbe(TrainConfig(max_steps=1, batch_size=4, seq_len=16), ids, 4, torch.device("cpu"), "float32")
    before = torch.get_rng_state()
    result = probe.measure(ModelConfig(vocab_size=50, embedding_size=8, hidden_size=16, layers=1, dropout=0.0, recurrent_dropout=0.0))
    assert torch.equal(before, torch.get_rng_state())
    assert result.tokens_per_sec > 0 and result.eval_tokens_per_sec > 0 and result.seconds > 0 and result.threads >= 1


def test_the_cores_are_those_this_process_may_use(monkeypatch):
    from textlstm.hardware import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert threads.usable_cores() == 1
    assert threads.default_threads(512, 2048, 4, 64) == 1  # large work, but one core to run on


def test_a_timed_run_records_its_plan_and_resume_keeps_it(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    command = ("train", "--dataset", small_corpus, "--batch-size", "4", "--seq-len", "32", "--output", out)
    result = run_cli(*command, "--max-minutes", "0.15")
    assert result.code == 0, result.err
    assert "measured in " in result.err and "tokens/s" in result.err and "model: 2 x " in result.err
    saved = json.loads((out / "config.json").read_text())
    assert saved["plan"]["tokens_per_sec"] and saved["model"]["hidden_size"] == saved["plan"]["chosen"][1]
    assert isinstance(saved["train"]["eval_every"], int)
    again = run_cli(*command, "--resume", out, "--max-minutes", "0.2")
    assert again.code == 0, again.err
    assert "measured in " not in again.err
    assert json.loads((out / "config.json").read_text()) == saved


def test_a_run_of_given_sizes_and_steps_does_not_time_anything(run_cli, small_corpus, tmp_path):
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2", "--output", tmp_path / "run")
    assert result.code == 0, result.err
    assert "measured in " not in result.err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["plan"] is None
