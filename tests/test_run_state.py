"""The run's mutable state is one object, saved and restored whole; the settings are resolved once."""

import dataclasses
import json
import math

import torch

from test_train import tiny_config
from textlstm.training.run_state import RunState


def test_the_run_state_is_saved_and_restored_whole():
    state = RunState(
        step=12,
        best_valid_loss=1.25,
        evals_since_best=2,
        evaluated_step=10,
        spent_before=30.0,
        lstm_state=(torch.randn(2, 4, 8), torch.randn(2, 4, 8)),
    )
    state.start_clock(at=100.0)
    saved = state.to_saved(at=107.5)
    expected_draw = torch.rand(3)  # what the random stream gives next, after the save
    torch.manual_seed(999)  # the stream moves on elsewhere
    restored = RunState.from_saved(saved, torch.device("cpu"), rows_per_process=4)
    assert torch.equal(torch.rand(3), expected_draw)  # the random stream is back where it was saved
    assert (restored.step, restored.best_valid_loss, restored.evals_since_best, restored.evaluated_step) == (
        12,
        1.25,
        2,
        10,
    )
    assert restored.spent_before == 37.5  # the budget spent, this session's 7.5 s included
    assert all(torch.equal(a, b) for a, b in zip(restored.lstm_state, state.lstm_state))


def test_a_new_state_counts_the_plans_timing_in_the_budget():
    state = RunState(spent_before=4.0)
    state.start_clock(at=50.0)
    assert state.clock == 4.0 and state.elapsed(at=51.0) == 5.0
    assert RunState().best_valid_loss == math.inf


def test_the_settings_are_resolved_before_training_and_not_changed_by_it(small_corpus, tmp_path):
    from textlstm.training.trainer import Trainer

    config = tiny_config(small_corpus, max_steps=4, eval_every=2)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, tokenizer="auto"))  # the data decides
    (tmp_path / "run").mkdir()
    trainer = Trainer(config, tmp_path / "run")
    resolved = trainer.config
    assert resolved.data.tokenizer in ("char", "bpe") and resolved.model.vocab_size == trainer.data.tokenizer.vocab_size
    assert config.data.tokenizer == "auto" and config.model.vocab_size == 0  # the settings given are left as they were
    trainer.run()
    assert trainer.config == resolved
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == json.loads(resolved.to_json())
