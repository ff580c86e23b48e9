"""Settings left at "auto": the tokenizer, dropouts and weight decay chosen once the data is known."""

import json
import math

import pytest

from conftest import TINY_MODEL
from textlstm.config import ModelConfig, RunConfig, TrainConfig
from textlstm.training.auto_settings import (
    LR_CAP,
    REGULARIZATION_TABLE,
    budget_tokens,
    learning_rate_for,
    lstm_weights,
    model_weights,
    regularization_for,
    resolve_regularization,
)

TRAIN_TOKENS = 10_000
WEIGHTS = TRAIN_TOKENS  # a model with as many weights as its text has tokens: weighted epochs = epochs
TINY_WEIGHTS = lstm_weights(2, 32, 16)  # TINY_MODEL's
BOUNDS = list(zip(REGULARIZATION_TABLE, REGULARIZATION_TABLE[1:]))  # each row with the one after it


@pytest.mark.parametrize("row,following", BOUNDS)
def test_regularization_at_a_bound_is_that_rows_and_just_above_it_the_next_rows(row, following):
    bound = row[0]
    at = regularization_for(TRAIN_TOKENS, bound * TRAIN_TOKENS, WEIGHTS)
    above = regularization_for(TRAIN_TOKENS, bound * TRAIN_TOKENS + 1, WEIGHTS)
    assert (at.dropout, at.recurrent_dropout, at.weight_decay) == row[1:]
    assert (above.dropout, above.recurrent_dropout, above.weight_decay) == following[1:]


def test_the_table_ends_with_a_row_for_any_number_of_epochs():
    assert REGULARIZATION_TABLE[-1][0] == math.inf
    last = regularization_for(TRAIN_TOKENS, 1e6 * TRAIN_TOKENS, WEIGHTS)
    assert (last.dropout, last.recurrent_dropout, last.weight_decay) == REGULARIZATION_TABLE[-1][1:]


def test_a_streamed_corpus_counts_as_at_most_one_epoch():
    first = REGULARIZATION_TABLE[0]
    chosen = regularization_for(None, 1e12, 10**9)
    assert first[0] >= 1 and (chosen.dropout, chosen.recurrent_dropout, chosen.weight_decay) == first[1:]


def test_the_same_epochs_get_more_dropout_for_a_larger_model_or_a_smaller_text():
    small, large = lstm_weights(2, 256, 64), lstm_weights(2, 512, 128)
    text = 1_000_000
    epochs = 20 * text  # tiny Shakespeare's size, 20 epochs: the measured runs put 2 x 256 at 0.1, 2 x 512 at 0.3
    assert regularization_for(text, epochs, small).dropout == 0.1
    assert regularization_for(text, epochs, large).dropout == 0.3
    assert regularization_for(text // 4, 20 * (text // 4), small).dropout == 0.3
    assert regularization_for(4 * text, 3 * 4 * text, large).dropout == 0.0


def test_the_measured_dropout_winners_are_chosen():
    small = lstm_weights(2, 256, 64)
    shakespeare = 1_009_137  # the held-out plays: 0.1 beat 0.3 at 28 epochs (W 23.6)
    assert regularization_for(shakespeare, 28 * shakespeare, small).dropout == 0.1
    first_300k = 300_000  # of tiny Shakespeare: 0.3 beat 0.1 at 16 epochs (W 45)
    assert regularization_for(first_300k, 16 * first_300k, small).dropout == 0.3
    tiny_shakespeare = 1_003_854  # no dropout beat 0.1 at 1.2 epochs (W 1.0)
    assert regularization_for(tiny_shakespeare, 1.2 * tiny_shakespeare, small).dropout == 0.0


def test_weight_decay_grows_with_the_weighted_epochs_as_measured():
    small = lstm_weights(2, 256, 64)
    ten_minutes_of_tiny_shakespeare = regularization_for(1_003_856, 21.7 * 1_003_856, small)  # W 18.4
    fifteen_minutes_of_german = regularization_for(2_412_584, 11 * 2_412_584, small)  # W 3.9
    assert ten_minutes_of_tiny_shakespeare.weight_decay == 0.1
    assert fifteen_minutes_of_german.weight_decay == 0.01
    decays = [row[3] for row in REGULARIZATION_TABLE]
    assert decays == sorted(decays)


def test_the_budget_is_the_least_of_the_counted_limits_and_minutes_are_not_guessed():
    assert budget_tokens(TrainConfig(max_steps=10, batch_size=4, seq_len=8), 1000) == 320
    assert budget_tokens(TrainConfig(max_steps=10, seq_len=8), 1000) == 10 * 16 * 8  # --batch-size auto: the tuned 16
    assert budget_tokens(TrainConfig(max_steps=10, seq_len=8), 1000, batch_size=64) == 10 * 64 * 8  # as planned
    assert budget_tokens(TrainConfig(epochs=3), 1000) == 3000
    assert budget_tokens(TrainConfig(max_minutes=2), 1000) is None  # the planner measures what minutes buy
    assert budget_tokens(TrainConfig(epochs=3, max_steps=10, batch_size=4, seq_len=8), 1000) == 320
    assert budget_tokens(TrainConfig(epochs=3), None) is None  # streamed: nothing to count


def test_an_explicit_value_wins_over_auto_and_auto_becomes_numbers():
    model = ModelConfig(dropout=0.0, layers=2, hidden_size=32, embedding_size=16)
    config = RunConfig(model=model, train=TrainConfig(max_steps=1000, batch_size=16, seq_len=64))
    auto = regularization_for(TRAIN_TOKENS, 1000 * 16 * 64, model_weights(model))
    assert auto.dropout != 0.0, "the budget should reach a row of the table with dropout"
    resolved, line = resolve_regularization(config, TRAIN_TOKENS, 1000 * 16 * 64)
    assert resolved.model.dropout == 0.0
    assert (resolved.model.recurrent_dropout, resolved.train.weight_decay) == (
        auto.recurrent_dropout,
        auto.weight_decay,
    )
    assert line.startswith(f"recurrent dropout {auto.recurrent_dropout:g}, weight decay") and "dropout 0," not in line
    untouched, none = resolve_regularization(resolved, TRAIN_TOKENS, 1000 * 16 * 64)
    assert untouched == resolved and none is None


def saved_config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def test_auto_resolves_and_the_saved_config_holds_what_was_chosen(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    command = ("train", "--dataset", small_corpus, *TINY_MODEL, "--eval-every", "2", "--output", out)
    result = run_cli(*command, "--max-steps", "2")
    assert result.code == 0, result.err
    saved = saved_config(out)
    assert saved["data"]["tokenizer"] == "char"
    chosen = regularization_for(train_tokens_of(out), 2 * 4 * 32, TINY_WEIGHTS)
    assert (saved["model"]["dropout"], saved["model"]["recurrent_dropout"], saved["train"]["weight_decay"]) == (
        chosen.dropout,
        chosen.recurrent_dropout,
        chosen.weight_decay,
    )
    assert "tokenizer: char (auto: " in result.err and f"dropout {chosen.dropout:g}, recurrent dropout" in result.err
    # The command it was started with, "auto" typed out or not, resumes it.
    again = run_cli(
        *command,
        "--max-steps",
        "4",
        "--resume",
        out,
        "--tokenizer",
        "auto",
        "--dropout",
        "auto",
        "--weight-decay",
        "auto",
    )
    assert again.code == 0, again.err
    assert saved_config(out) == saved
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2, 4]


def train_tokens_of(folder) -> int:
    """The training tokens a run counted (its ids are in the cache)."""
    from textlstm.data.prepare import prepare
    from textlstm.runs.checkpoint import load_config

    return prepare(load_config(folder).data, splits=("train",)).splits["train"].info.scored_tokens


def test_an_explicit_dropout_of_zero_wins_in_a_run_of_many_epochs(run_cli, tmp_path, shakespeare_text):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(shakespeare_text[:3000], encoding="utf-8")
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", corpus, *TINY_MODEL, "--epochs", "8", "--dropout", "0", "--output", out)
    assert result.code == 0, result.err
    auto = regularization_for(100, 800, TINY_WEIGHTS)  # eight epochs
    assert auto.dropout != 0.0, "eight epochs should reach a row of the table with dropout"
    saved = saved_config(out)
    assert saved["model"]["dropout"] == 0.0 and saved["model"]["recurrent_dropout"] == auto.recurrent_dropout


def test_an_explicit_tokenizer_is_kept_and_fine_tuning_with_auto_keeps_the_parents(run_cli, small_corpus, tmp_path):
    parent = tmp_path / "words"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--tokenizer",
        "word",
        "--vocab-size",
        "300",
        "--max-steps",
        "2",
        "--output",
        parent,
    )
    assert result.code == 0, result.err
    assert saved_config(parent)["data"]["tokenizer"] == "word" and "(auto: " not in result.err.split("tokens:")[0]
    child = tmp_path / "child"
    result = run_cli(
        "train",
        "--init-from",
        parent,
        "--dataset",
        small_corpus,
        "--tokenizer",
        "auto",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--output",
        child,
    )
    assert result.code == 0, result.err
    assert saved_config(child)["data"]["tokenizer"] == "word" and saved_config(child)["data"]["vocab_size"] == 300


def test_a_config_file_value_wins_over_auto(tmp_path):
    from test_config_file import config_of

    path = tmp_path / "run.toml"
    path.write_text('dropout = 0.0\nweight-decay = 0.5\nrecurrent-dropout = "auto"\nbatch-size = 32\nlr = "auto"\n')
    config = config_of("--config", path)
    assert (config.model.dropout, config.model.recurrent_dropout, config.train.weight_decay) == (0.0, None, 0.5)
    assert (config.train.batch_size, config.train.lr) == (32, None)
    assert (config_of().train.batch_size, config_of().train.lr) == (None, None)  # both auto by default
    assert config_of("--batch-size", "auto", "--lr", "0.01").train.lr == 0.01


def test_the_learning_rate_is_the_tuned_one_up_to_16_rows_then_grows_as_the_square_root_of_the_batch_to_a_cap():
    assert [learning_rate_for(rows) for rows in (1, 4, 16)] == [0.004] * 3
    assert learning_rate_for(32) == pytest.approx(0.004 * math.sqrt(2), rel=0.01)
    assert learning_rate_for(64) == 0.008 == LR_CAP
    assert learning_rate_for(1024) == LR_CAP
    rates = [learning_rate_for(rows) for rows in range(1, 300)]
    assert rates == sorted(rates)


def test_a_run_left_at_auto_records_the_tuned_batch_and_rate(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        "--embedding-size",
        "16",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--seq-len",
        "32",
        "--max-steps",
        "2",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    assert (saved_config(out)["train"]["batch_size"], saved_config(out)["train"]["lr"]) == (16, 0.004)
    assert "batch 16 x 32 (auto: " in result.err and "learning rate 0.004 (auto: " in result.err
    again = run_cli("train", "--resume", out, "--max-steps", "3", "--batch-size", "auto", "--lr", "auto")
    assert again.code == 0, again.err
    assert saved_config(out)["train"]["batch_size"] == 16
