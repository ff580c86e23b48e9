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


@pytest.mark.parametrize("limit, expected", [
    (("--max-minutes", "0.02"), {"max_minutes": 0.02, "max_steps": None, "epochs": None}),
    (("--max-steps", "2"), {"max_minutes": None, "max_steps": 2, "epochs": None}),
    (("--epochs", "1", "--max-minutes", "0.02"), {"max_minutes": 0.02, "max_steps": None, "epochs": 1}),
])
def test_each_limit_given_alone_is_the_only_limit(run_cli, small_corpus, tmp_path, limit, expected):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, *limit, "--eval-tokens", "500", "--output", out)
    assert result.code == 0, result.err
    saved = saved_train_config(out)
    assert {name: saved[name] for name in expected} == expected


def test_resuming_with_a_step_limit_drops_the_time_budget(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-minutes", "0.01", "--eval-tokens", "500",
                   "--output", out).code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    target = records[-1]["step"] + 3
    result = run_cli("train", "--resume", out, "--max-steps", str(target))
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == target
