"""The planner: a time budget is measured on this machine, then spent on the shape the size rule picks."""

import dataclasses
import json

import numpy as np
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


def best_shape_by_rule(machine: Machine, minutes: float) -> tuple[int, int, int]:
    """The planner's choice worked out by hand: each candidate timed in turn (0.5 s each), until one predicts worse."""
    budget = budget_plan.Budget(config_for(max_minutes=minutes), TRAIN_TOKENS, 50_000)
    best, best_loss, seconds = None, float("inf"), 0.0
    for layers, hidden in CANDIDATE_SHAPES:
        shape = budget_plan._shape(ModelConfig(), layers, hidden)
        seconds += 0.5
        probe = machine(ModelConfig(layers=shape[0], hidden_size=shape[1], embedding_size=shape[2]))
        loss = predicted_loss(shape, budget.spending(probe, seconds).tokens, TRAIN_TOKENS)
        if loss >= best_loss:
            break
        best, best_loss = shape, loss
    return best


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
    assert chosen == best_shape_by_rule(Machine(20e9), 15)
    assert machine.asked[0] == (2, 256, 64) and chosen in machine.asked  # timed from the smallest up
    assert plan.seconds == pytest.approx(0.5 * len(machine.asked))
    # Each candidate timed with dropout on, then the chosen one without (whether it needs dropout).
    assert plan.config.plan["chosen"] == list(chosen) and len(plan.config.plan["tokens_per_sec"]) == len(machine.asked) - 1
    assert machine.asked[-1] == chosen
    assert plan.lines[0].startswith("measured in ") and "tokens/s" in plan.lines[0]
    assert any(line.startswith(f"model: 2 x {chosen[1]}, embedding {chosen[2]} (auto: ") for line in plan.lines)
    # The dropouts follow the epochs of the chosen shape's measured tokens.
    assert plan.config.plan["epochs"] == pytest.approx(plan.config.plan["tokens"] / TRAIN_TOKENS, rel=0.01)


class DropoutCosts(Machine):
    """Steps with dropout take `slower` times as long."""

    def __init__(self, speed, slower):
        super().__init__(speed)
        self.slower = slower

    def __call__(self, model):
        probe = super().__call__(model)
        if model.dropout == 0 and model.recurrent_dropout == 0:
            return probe
        return dataclasses.replace(probe, tokens_per_sec=probe.tokens_per_sec / self.slower)


@pytest.mark.parametrize("slower", [1.0, 1.4])
def test_dropout_is_decided_by_the_epochs_a_run_without_it_would_read(slower):
    from textlstm.training.auto_settings import REGULARIZATION_TABLE, lstm_weights, weighted_epochs

    no_dropout_up_to = REGULARIZATION_TABLE[0][0]
    machine = DropoutCosts(20e9, slower)
    bare = machine(ModelConfig(layers=2, hidden_size=256, embedding_size=64, dropout=0.0, recurrent_dropout=0.0))
    # A text that a run without dropout would read 1 weighted epoch past the table's first bound, one
    # with dropout (1.4 x slower) below it.
    seconds = 4.5 * 60
    tokens, weights = bare.tokens_per_sec * seconds * 0.93, lstm_weights(2, 256, 64)
    text = round((tokens * weights / (no_dropout_up_to + 1)) ** 0.5)
    assert weighted_epochs(text, tokens, weights) == pytest.approx(no_dropout_up_to + 1)
    plan = plan_run(config_for(max_minutes=4.5, hidden_size=256), text, 20_000, machine)
    assert plan.config.model.dropout > 0  # it would overfit without
    assert plan.config.plan["tokens_per_sec_of_chosen"] == round(bare.tokens_per_sec / slower)  # and runs at the dropout pace
    small = plan_run(config_for(max_minutes=4.5, hidden_size=256), text * 3, 20_000, DropoutCosts(20e9, slower))
    assert small.config.model.dropout == 0 and small.config.plan["tokens_per_sec_of_chosen"] == round(bare.tokens_per_sec)


def test_timing_stops_once_a_larger_shape_predicts_worse():
    machine = Machine(2e9)  # slow: the smallest shapes win, the large ones are never timed
    plan_run(config_for(max_minutes=2), TRAIN_TOKENS, 50_000, machine)
    assert len(machine.asked) < len(CANDIDATE_SHAPES)


def test_the_sizes_given_are_kept_and_only_the_rest_is_planned():
    machine = Machine(20e9)
    plan = plan_run(config_for(max_minutes=15, hidden_size=300), TRAIN_TOKENS, 50_000, machine)
    assert plan.config.model.hidden_size == 300 and plan.config.model.embedding_size == 75
    assert set(machine.asked) == {(2, 300, 75)}  # every candidate is the same shape once the size is given
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
    for valid_tokens, speed in ((100_000, 20e9), (1_000_000, 2e9)):  # cheap evaluations, then dear ones
        machine = Machine(speed)
        plan = plan_run(config_for(max_minutes=15), TRAIN_TOKENS, valid_tokens, machine)
        train = plan.config.train
        chosen = (plan.config.model.layers, plan.config.model.hidden_size, plan.config.model.embedding_size)
        probe = machine(ModelConfig(layers=chosen[0], hidden_size=chosen[1], embedding_size=chosen[2]))
        evaluations = max(1, round(plan.config.plan["tokens"] / (train.batch_size * train.seq_len) / train.eval_every))
        assert evaluations <= budget_plan.MAX_EVALUATIONS
        one = valid_tokens / probe.eval_tokens_per_sec
        spent = evaluations * one
        assert spent <= max(one, 2 * budget_plan.EVAL_SHARE * 15 * 60) * 1.1  # the last one is always made
        # What the evaluations take is not counted as training tokens.
        assert plan.config.plan["tokens"] <= probe.tokens_per_sec * (15 * 60 - plan.seconds - spent * 0.9)


def test_a_step_limit_under_a_time_budget_caps_the_tokens_planned():
    plan = plan_run(config_for(max_minutes=15, max_steps=300), TRAIN_TOKENS, 50_000, Machine(20e9))
    assert plan.config.plan["tokens"] == 300 * 16 * 64
    assert plan.config.plan["epochs"] == round(300 * 16 * 64 / TRAIN_TOKENS, 2)
    assert "0.3M tokens" in plan.lines[0]


def test_timing_stops_once_it_has_taken_a_tenth_of_the_budget():
    class SlowTimer(Machine):
        def __call__(self, model):
            return dataclasses.replace(super().__call__(model), seconds=5.0)

    machine = SlowTimer(200e9)  # fast steps, so only the timing's own cost stops it
    plan_run(config_for(max_minutes=1), TRAIN_TOKENS, 50_000, machine)
    assert len(machine.asked) == 3  # two candidates (10 s of 60), then the chosen one without dropout


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


def test_the_probe_reads_document_windows_as_the_run_does_and_counts_no_padding(monkeypatch):
    """With --batching documents the probe times padded windows of whole documents, and its rate is
    of the tokens scored: a clock that moves one second per step makes the rate tokens per step."""
    from textlstm.data.batchers import DocumentBatcher
    from textlstm.tokens import EOT_ID, PAD_ID
    from textlstm.training import speed_probe

    rng = np.random.default_rng(0)
    ids = np.concatenate([[EOT_ID], *[[*rng.integers(3, 50, int(n)), EOT_ID] for n in rng.integers(2, 12, 300)]])
    clock = [0.0]
    monkeypatch.setattr(speed_probe, "now", lambda: clock[0])
    step = speed_probe.SpeedProbe._step

    def one_second_step(self, *args):
        clock[0] += 1.0
        return step(self, *args)

    monkeypatch.setattr(speed_probe.SpeedProbe, "_step", one_second_step)
    train = TrainConfig(max_steps=1, batch_size=4, seq_len=16)
    shape = ModelConfig(vocab_size=50, embedding_size=8, hidden_size=16, layers=1, dropout=0.0, recurrent_dropout=0.0)
    timed = range(speed_probe.WARM_UP_STEPS, speed_probe.WARM_UP_STEPS + 2)  # 2 timed steps pass PROBE_SECONDS
    windows = DocumentBatcher(ids, 4, 16, train.seed)
    scored = [int((windows.batch(i)[1] != PAD_ID).sum()) for i in timed]
    assert sum(scored) < 2 * 4 * 16  # the windows are padded
    documents = speed_probe.SpeedProbe(train, ids, 4, torch.device("cpu"), "float32", documents=True).measure(shape)
    assert documents.tokens_per_sec == pytest.approx(sum(scored) / 2)
    stream = speed_probe.SpeedProbe(train, ids, 4, torch.device("cpu"), "float32").measure(shape)
    assert stream.tokens_per_sec == pytest.approx(4 * 16)


def test_the_cores_are_those_this_process_may_use(monkeypatch):
    from textlstm.hardware import threads

    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {3, 5}, raising=False)
    monkeypatch.setattr(threads, "torch_default_threads", lambda: 8)  # a machine of 8 cores
    assert threads.default_threads(512, 2048, 4, 64) == 2  # this process may use cores 3 and 5 only
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
    assert saved["plan"]["device"] == "cpu" and saved["plan"]["device_name"]  # what it was timed on, by name
    assert isinstance(saved["train"]["eval_every"], int)
    first_steps = len((out / "metrics.jsonl").read_text().splitlines())
    # The command typed again with auto spelled out resumes it with the plan it has.
    again = run_cli(*command, "--resume", out, "--max-minutes", "0.35", "--eval-every", "auto", "--hidden-size", "auto")
    assert again.code == 0, again.err
    assert "measured in " not in again.err and "resuming" in again.err
    resumed = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][first_steps:]
    assert resumed and all(step % saved["train"]["eval_every"] == 0 for step in resumed[:-1])  # the saved spacing


def test_fine_tuning_with_the_sizes_left_at_auto_takes_the_parents(run_cli, small_corpus, tmp_path):
    parent = tmp_path / "parent"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2", "--output", parent).code == 0
    result = run_cli("train", "--init-from", parent, "--dataset", small_corpus, "--hidden-size", "auto", "--layers", "auto",
                     "--max-steps", "2", "--batch-size", "4", "--seq-len", "32", "--output", tmp_path / "child")
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "child" / "config.json").read_text())["model"]["hidden_size"] == 32


def test_a_run_of_given_sizes_and_steps_does_not_time_anything(run_cli, small_corpus, tmp_path):
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2", "--output", tmp_path / "run")
    assert result.code == 0, result.err
    assert "measured in " not in result.err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["plan"] is None


def test_the_plan_is_resolved_from_the_measurements_alone():
    """Measuring and choosing are apart: the same measurements give the same plan, and resolving
    times nothing (a run's plan can be checked, or remade, from what config.json records)."""
    config = config_for(max_minutes=15)
    measurements = budget_plan.measure_for_plan(config, TRAIN_TOKENS, 50_000, Machine(20e9))
    assert measurements.bare is not None  # the dropouts are the plan's: the chosen shape timed without them
    first = budget_plan.resolve_plan(config, TRAIN_TOKENS, 50_000, measurements)
    again = budget_plan.resolve_plan(config, TRAIN_TOKENS, 50_000, measurements)
    assert first.config == again.config and first.lines == again.lines
    assert first.config == plan_run(config, TRAIN_TOKENS, 50_000, Machine(20e9)).config
    assert first.seconds == pytest.approx(sum(p.seconds for p in measurements.probes.values()) + 0.5)
    assert config.model.hidden_size is None  # the settings given are not changed in place


def test_the_probe_times_the_trainers_own_step(monkeypatch):
    """The speeds the plan reads are those of training.step.TrainingStep, clipping and all."""
    from textlstm.training import step as step_module
    from textlstm.training.speed_probe import SpeedProbe

    calls = []
    trainers_step = step_module.TrainingStep.__call__

    def counted(self, *args):
        calls.append(self.train.clip)
        return trainers_step(self, *args)

    monkeypatch.setattr(step_module.TrainingStep, "__call__", counted)
    ids = np.random.default_rng(0).integers(3, 50, 5_000)
    probe = SpeedProbe(TrainConfig(max_steps=1, batch_size=4, seq_len=16, clip=0.5), ids, 4, torch.device("cpu"),
                       "float32")
    probe.measure(ModelConfig(vocab_size=50, embedding_size=8, hidden_size=16, layers=1, dropout=0.0,
                              recurrent_dropout=0.0))
    assert len(calls) >= 3 and set(calls) == {0.5}
