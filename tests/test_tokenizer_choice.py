"""--tokenizer auto (training/tokenizer_choice.py): char where the budget reads the text many times, a race
of char and BPE sizes on the user's text where it does not, char where nothing can be measured."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import TINY_MODEL
from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.data.prepare import corpus_of
from textlstm.training import budget_plan, plan_walk, tokenizer_choice
from textlstm.training.auto_settings import model_weights
from textlstm.training.tokenizer_choice import (
    CANDIDATES,
    CHAR_WEIGHTED_EPOCHS,
    MIN_RACE_SECONDS,
    RACE_SHARE,
    candidates_for,
    choose_tokenizer,
)

CPU = torch.device("cpu")
SMALL = ModelConfig(layers=1, hidden_size=16, embedding_size=8)


def config_for(corpus, **train) -> RunConfig:
    return RunConfig(model=SMALL, data=DataConfig(dataset=str(corpus)), train=TrainConfig(**train))


@pytest.fixture
def prose(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text("It is a truth universally acknowledged, that a single man in possession.\n" * 2000)
    return path


def raced(monkeypatch, bits: dict[str, float], min_chars_per_entry: float = 0) -> list[str]:
    """Make every race return `bits` of its candidate (by name) and record which were raced; every BPE size
    is raced on the tests' small texts unless `min_chars_per_entry` says otherwise."""
    seen = []
    monkeypatch.setattr(tokenizer_choice, "MIN_CHARS_PER_ENTRY", min_chars_per_entry)

    def race_one(config, tokenizer, sample, seconds, device, precision):
        name = "char" if tokenizer.byte_fallback_start is not None else f"bpe {_size_asked[tokenizer]:,}"
        seen.append(name)
        return bits[name]

    _size_asked: dict = {}
    build = tokenizer_choice.build_tokenizer

    def build_tokenizer(kind, texts, size=None):
        tokenizer = build(kind, texts, size)
        _size_asked[tokenizer] = size
        return tokenizer

    monkeypatch.setattr(tokenizer_choice, "race_one", race_one)
    monkeypatch.setattr(tokenizer_choice, "build_tokenizer", build_tokenizer)
    return seen


def weighted_epochs_of(monkeypatch, weighted: float):
    """Make the timing find the char epochs that give `weighted` weighted epochs for the SMALL model."""

    def char_epochs(config, sample, char, device, precision):
        weights = model_weights(tokenizer_choice.race_model(config, char))
        seconds = (config.train.max_minutes or 0) * 60
        return weighted * sample.train_chars / weights, "a test's figure", seconds

    monkeypatch.setattr(tokenizer_choice, "_char_epochs", char_epochs)


def test_a_budget_that_reads_the_text_many_times_trains_char_without_a_race(prose, monkeypatch):
    seen = raced(monkeypatch, {})
    weighted_epochs_of(monkeypatch, CHAR_WEIGHTED_EPOCHS)
    choice = choose_tokenizer(
        config_for(prose, max_minutes=60), corpus_of(DataConfig(dataset=str(prose))), CPU, "float32"
    )
    assert (choice.kind, choice.vocab_size, seen) == ("char", None, [])
    assert f"{CHAR_WEIGHTED_EPOCHS:.2g} weighted epochs for 1 x 16" in choice.reason


def test_a_budget_that_reads_the_text_few_times_races_every_candidate_and_the_lowest_wins(prose, monkeypatch):
    bits = {"char": 2.4, "bpe 1,024": 2.3, "bpe 4,096": 2.2, "bpe 16,384": 2.25}
    seen = raced(monkeypatch, bits)
    weighted_epochs_of(monkeypatch, CHAR_WEIGHTED_EPOCHS / 2)
    choice = choose_tokenizer(
        config_for(prose, max_minutes=60), corpus_of(DataConfig(dataset=str(prose))), CPU, "float32"
    )
    assert seen == ["char", "bpe 1,024", "bpe 4,096", "bpe 16,384"] == list(choice.race)
    assert (choice.kind, choice.vocab_size) == ("bpe", 4096)
    assert all(f"{name} {value:.3f}" in choice.reason for name, value in bits.items())
    bits["char"] = 2.1
    assert (
        choose_tokenizer(
            config_for(prose, max_minutes=60), corpus_of(DataConfig(dataset=str(prose))), CPU, "float32"
        ).kind
        == "char"
    )


def test_the_bpe_sizes_raced_are_those_with_enough_text_per_vocabulary_entry():
    config = RunConfig(model=SMALL)
    sizes = {chars: [size for _, size in candidates_for(config, chars)] for chars in (200_000, 1_000_000, 2_500_000)}
    assert sizes == {200_000: [None], 1_000_000: [None, 1024], 2_500_000: [None, 1024, 4096]}
    assert candidates_for(config, 30_000_000) == tokenizer_choice.CANDIDATES


def test_sizes_too_large_for_the_text_are_left_out_of_the_race_and_said(prose, monkeypatch):
    seen = raced(monkeypatch, {"char": 2.4, "bpe 1,024": 2.3}, min_chars_per_entry=100)  # 1,024 fits 131k chars
    weighted_epochs_of(monkeypatch, CHAR_WEIGHTED_EPOCHS / 2)
    choice = choose_tokenizer(
        config_for(prose, max_minutes=60), corpus_of(DataConfig(dataset=str(prose))), CPU, "float32"
    )
    assert seen == ["char", "bpe 1,024"] and (choice.kind, choice.vocab_size) == ("bpe", 1024)
    assert "not raced: bpe 4,096, 16,384, under 100 characters of text per entry" in choice.reason


def test_a_text_too_small_for_every_bpe_size_trains_char_without_a_race(prose, monkeypatch):
    seen = raced(monkeypatch, {}, min_chars_per_entry=tokenizer_choice.MIN_CHARS_PER_ENTRY)
    weighted_epochs_of(monkeypatch, CHAR_WEIGHTED_EPOCHS / 2)
    choice = choose_tokenizer(
        config_for(prose, max_minutes=60), corpus_of(DataConfig(dataset=str(prose))), CPU, "float32"
    )
    assert (choice.kind, seen) == ("char", []) and "not raced: bpe 1,024, 4,096, 16,384" in choice.reason


def test_a_given_vocabulary_size_races_char_against_bpe_of_that_size(prose, monkeypatch):
    seen = raced(monkeypatch, {"char": 2.4, "bpe 2,000": 2.3})
    weighted_epochs_of(monkeypatch, CHAR_WEIGHTED_EPOCHS / 2)
    config = RunConfig(
        model=SMALL, data=DataConfig(dataset=str(prose), vocab_size=2000), train=TrainConfig(max_minutes=60)
    )
    choice = choose_tokenizer(config, corpus_of(config.data), CPU, "float32")
    assert seen == ["char", "bpe 2,000"] and (choice.kind, choice.vocab_size) == ("bpe", 2000)


def test_no_race_without_time_for_one_and_char_where_nothing_is_counted(prose, monkeypatch):
    seen = raced(monkeypatch, {})
    weighted_epochs_of(monkeypatch, 0.5)
    corpus = corpus_of(DataConfig(dataset=str(prose)))
    too_short = MIN_RACE_SECONDS * len(CANDIDATES) / RACE_SHARE / 60 * 0.9  # minutes
    short = choose_tokenizer(config_for(prose, max_minutes=too_short), corpus, CPU, "float32")
    steps = choose_tokenizer(config_for(prose, max_steps=5), corpus, CPU, "float32")
    assert (short.kind, steps.kind, seen) == ("char", "char", [])
    assert "too short to race" in short.reason and "no time budget to race" in steps.reason
    monkeypatch.setattr(tokenizer_choice, "_char_epochs", lambda *args: (None, "", 0.0))
    assert "no budget to count" in choose_tokenizer(config_for(prose), corpus, CPU, "float32").reason
    assert "streamed" in choose_tokenizer(config_for(prose, max_minutes=60), None, CPU, "float32").reason


def test_the_epochs_are_timed_for_a_time_budget_and_counted_for_step_and_epoch_limits(prose):
    corpus = corpus_of(DataConfig(dataset=str(prose)))
    sample = tokenizer_choice.TextSample.of(corpus)
    char = tokenizer_choice.build_tokenizer("char", [sample.train])
    assert sample.train_chars == len(sample.train)  # a small text is read whole
    counted, how, seconds = tokenizer_choice._char_epochs(config_for(prose, epochs=3), sample, char, CPU, "float32")
    assert counted == pytest.approx(3) and "count" in how and seconds == 0
    one, how, one_seconds = tokenizer_choice._char_epochs(
        config_for(prose, max_minutes=1), sample, char, CPU, "float32"
    )
    two, _, _ = tokenizer_choice._char_epochs(config_for(prose, max_minutes=2), sample, char, CPU, "float32")
    assert one > 1 and "chars/s" in how and one_seconds == 60
    assert two == pytest.approx(2 * one, rel=0.5)  # timed twice: about twice the epochs
    # A step limit that ends the run first: the epochs it counts, in the seconds its steps take.
    steps, _, steps_seconds = tokenizer_choice._char_epochs(
        config_for(prose, max_minutes=60, max_steps=3), sample, char, CPU, "float32"
    )
    assert steps == pytest.approx(3 * 16 * 64 / sample.train_chars) and 0 < steps_seconds < 60


def test_a_race_trains_and_scores_each_candidate_on_the_text_in_bits_per_character(prose):
    corpus = corpus_of(DataConfig(dataset=str(prose)))
    sample = tokenizer_choice.TextSample.of(corpus)
    config = config_for(prose, max_minutes=60)
    state = torch.get_rng_state()
    scores = {}
    for kind, size in (("char", None), ("bpe", 300)):
        tokenizer = tokenizer_choice.build_tokenizer(kind, [sample.train], size)
        scores[kind] = tokenizer_choice.race_one(config, tokenizer, sample, 2.0, CPU, "float32")
    assert torch.equal(torch.get_rng_state(), state)  # the run's own random stream is left as it was
    # The text repeats one line: two seconds of training learn it below a uniform guess over its characters.
    uniform = math.log2(len(set(sample.train)))
    assert all(0 < bits < uniform for bits in scores.values()), scores


def test_the_time_spent_choosing_is_taken_from_the_budget_the_plan_spends():
    config = RunConfig(model=SMALL, train=TrainConfig(max_minutes=10))
    assert plan_walk.Budget(config, 1000, 100, before=30).seconds == 570
    plan = budget_plan.plan_run(config, 1000, 100, None, before=30)
    assert plan.seconds == 30  # nothing timed without a measure: only the choosing, which the run's clock starts at


def test_a_raced_choice_is_what_the_run_trains_and_saves(run_cli, prose, tmp_path, monkeypatch):
    raced(monkeypatch, {"char": 2.4, "bpe 1,024": 2.3, "bpe 4,096": 2.5, "bpe 16,384": 2.6})
    weighted_epochs_of(monkeypatch, 1.0)
    out = tmp_path / "run"
    result = run_cli(
        "train", "--dataset", prose, *TINY_MODEL, "--max-minutes", "10", "--max-steps", "2", "--output", out
    )
    assert result.code == 0, result.err
    saved = json.loads((out / "config.json").read_text())
    assert (saved["data"]["tokenizer"], saved["data"]["vocab_size"]) == ("bpe", 1024)
    assert "tokenizer: bpe of 1,024 tokens (auto: " in result.err and "raced" in result.err


def test_a_validation_text_too_short_to_score_a_race_on_trains_char(tmp_path, monkeypatch):
    seen = raced(monkeypatch, {})
    weighted_epochs_of(monkeypatch, 0.5)
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": "It is a truth universally acknowledged.\n" * 2000}))
    (folder / "validation.jsonl").write_text(json.dumps({"text": "A short one.\n" * 10}))
    data = DataConfig(dataset=str(folder))
    config = RunConfig(model=SMALL, data=data, train=TrainConfig(max_minutes=60))
    choice = choose_tokenizer(config, corpus_of(data), CPU, "float32")
    assert (choice.kind, seen) == ("char", []) and "too short to race on" in choice.reason


def test_the_runs_adaptive_cutoffs_are_left_out_for_a_candidate_they_do_not_fit(prose):
    config = RunConfig(model=ModelConfig(adaptive_cutoffs=[2000]), data=DataConfig(dataset=str(prose)))
    sample = tokenizer_choice.TextSample.of(corpus_of(config.data))
    char = tokenizer_choice.build_tokenizer("char", [sample.train])
    model = tokenizer_choice.race_model(config, char)  # a char vocabulary of a few hundred: no cutoff at 2,000
    assert model.adaptive_cutoffs is None and model.vocab_size == char.vocab_size


def test_fine_tuning_with_the_output_layer_left_at_auto_keeps_the_parents(tmp_path):
    from textlstm.training.finetune import Parent, conflicts

    parent = Parent(tmp_path, RunConfig(model=ModelConfig(output_layer="full", vocab_size=300)))
    assert conflicts({"output_layer": "auto"}, parent) == []  # as recipes/default.toml gives it
    assert conflicts({"output_layer": "adaptive"}, parent) == ["--output-layer adaptive (the parent has full)"]
