"""How long a run lasts: a time budget by default, and each of --epochs, --max-steps and
--max-minutes meaning exactly what it says when given alone (issues 10 and 11)."""

import json

import pytest

from conftest import TINY_MODEL
from textlstm.config import DEFAULT_MINUTES, TrainConfig


def saved_train_config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())["train"]


def test_a_run_given_no_limit_has_the_default_time_budget():
    assert TrainConfig().max_minutes == DEFAULT_MINUTES and TrainConfig().max_steps is None
    assert DEFAULT_MINUTES <= 5
    for limit in ({"max_steps": 10}, {"epochs": 2}):
        config = TrainConfig(**limit)
        assert config.max_minutes is None, limit


@pytest.mark.parametrize(
    "limit, expected",
    [
        (("--max-minutes", "0.02"), {"max_minutes": 0.02, "max_steps": None, "epochs": None}),
        (("--max-steps", "2"), {"max_minutes": None, "max_steps": 2, "epochs": None}),
        (("--epochs", "1", "--max-minutes", "0.02"), {"max_minutes": 0.02, "max_steps": None, "epochs": 1}),
    ],
)
def test_each_limit_given_alone_is_the_only_limit(run_cli, small_corpus, tmp_path, limit, expected):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, *limit, "--eval-tokens", "500", "--output", out)
    assert result.code == 0, result.err
    saved = saved_train_config(out)
    assert {name: saved[name] for name in expected} == expected


def test_resuming_with_a_step_limit_drops_the_time_budget(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert (
        run_cli(
            "train",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            "--max-minutes",
            "0.01",
            "--eval-tokens",
            "500",
            "--output",
            out,
        ).code
        == 0
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    target = records[-1]["step"] + 3
    result = run_cli("train", "--resume", out, "--max-steps", str(target))
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == target


def test_resuming_from_python_with_a_step_limit_drops_the_default_time_budget(small_corpus, tmp_path, monkeypatch):
    """A run given no limit ends by the clock (a fake one: 10 s a step); train(resume=..., train_overrides=
    {"max_steps": N}) then trains to step N, as `textlstm train --resume --max-steps N` does."""
    import textlstm.training.trainer as train_module
    from textlstm.config import DataConfig, ModelConfig, RunConfig

    clock = {"now": 0.0}
    monkeypatch.setattr(train_module, "now", lambda: clock["now"])

    class TenSecondSteps(train_module.Reporter):
        def step(self, step, loss, tokens_per_sec, lr):
            clock["now"] += 10.0

    config = RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(dataset=str(small_corpus)),
        train=TrainConfig(batch_size=4, seq_len=32, eval_every=1000, eval_tokens=500, save_every_minutes=0),
    )
    first = train_module.train(config, output=tmp_path / "run", reporter=TenSecondSteps())
    assert saved_train_config(tmp_path / "run")["max_minutes"] == DEFAULT_MINUTES
    assert first.steps == DEFAULT_MINUTES * 60 / 10
    resumed = train_module.train(
        resume=tmp_path / "run", reporter=TenSecondSteps(), train_overrides={"max_steps": first.steps + 3}
    )
    assert resumed.steps == first.steps + 3 and not resumed.interrupted
