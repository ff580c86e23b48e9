"""Tests for dynamic evaluation (`textlstm eval --dynamic`): every token is scored before the weights
learn from it, learning from the text lowers the loss on a passage that repeats, the checkpoint is
left as it was, and bad values are one error line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from conftest import VALID_TEXT
from test_evaluate import assert_one_error_line, eval_json, make_checkpoint
from textlstm.cli import eval as eval_command
from textlstm.evaluation import dynamic as dynamic_eval
from textlstm.evaluation.scoring import evaluate_split
from textlstm.tokens import EOT_ID


def stream_ids(tokenizer) -> np.ndarray:
    return np.array([EOT_ID, *tokenizer.encode(VALID_TEXT), EOT_ID], dtype=np.int64)


def test_with_no_learning_it_is_the_static_one_row_score(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    static = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--batch-size", "1")
    assert static["dynamic"] is None

    no_lr = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--dynamic", "--dynamic-lr", "0")
    # A decay of 1 takes the weights all the way back to the trained ones after every step.
    full_decay = eval_json(
        run_cli, "--checkpoint", tmp_path / "run", "--dynamic", "--dynamic-lr", "0.5", "--dynamic-decay", "1"
    )

    for dynamic in (no_lr, full_decay):
        assert dynamic["tokens"] == static["tokens"] and dynamic["chars"] == static["chars"]
        assert dynamic["loss"] == pytest.approx(static["loss"], rel=1e-5)
        assert dynamic["bits_per_char"] == pytest.approx(static["bits_per_char"], rel=1e-5)
    assert no_lr["dynamic"] == {"lr": 0.0, "decay": eval_command.DYNAMIC_DECAY, "seq_len": eval_command.DYNAMIC_SEQ_LEN}


def test_each_segment_is_scored_before_the_step_that_learns_from_it(tmp_path, folder_corpus):
    model, tokenizer = make_checkpoint(tmp_path / "run", folder_corpus)
    ids, seq_len = stream_ids(tokenizer), 40
    segments = list(dynamic_eval.segment_losses(model, ids, seq_len=seq_len, lr=0.5, decay=0.0))

    static_first = evaluate_split(model, ids, batch_size=1, seq_len=1000, max_tokens=seq_len)
    static_two = evaluate_split(model, ids, batch_size=1, seq_len=1000, max_tokens=2 * seq_len)
    assert segments[0] == (pytest.approx(static_first.loss_sum, rel=1e-5), seq_len)
    # The second segment is scored by weights that learnt from the first: not the static score.
    assert segments[1][0] != pytest.approx(static_two.loss_sum - static_first.loss_sum, rel=1e-3)
    # Nothing after a token changes its score: a run on a prefix gives the same segments.
    prefix = list(dynamic_eval.segment_losses(model, ids[: 5 * seq_len + 1], seq_len=seq_len, lr=0.5, decay=0.0))
    assert [loss for loss, _ in prefix] == pytest.approx([loss for loss, _ in segments[:5]], rel=1e-5)
    assert sum(count for _, count in segments) == len(ids) - 1


def test_learning_from_a_passage_that_repeats_lowers_the_loss(tmp_path, folder_corpus, run_cli):
    """VALID_TEXT is one passage six times over, one the model never saw."""
    make_checkpoint(tmp_path / "run", folder_corpus)
    static = eval_json(run_cli, "--checkpoint", tmp_path / "run")
    dynamic = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--dynamic", "--dynamic-lr", "0.3")
    assert dynamic["tokens"] == static["tokens"]
    assert dynamic["loss"] < 0.8 * static["loss"]


def test_the_checkpoint_and_the_model_are_unchanged(tmp_path, folder_corpus, run_cli):
    model, tokenizer = make_checkpoint(tmp_path / "run", folder_corpus)
    files = sorted(path for path in (tmp_path / "run").rglob("*") if path.is_file())
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}

    eval_json(run_cli, "--checkpoint", tmp_path / "run", "--dynamic", "--dynamic-lr", "0.3")
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files} == before
    assert sorted(path for path in (tmp_path / "run").rglob("*") if path.is_file()) == files

    weights = {name: param.detach().clone() for name, param in model.named_parameters()}
    dynamic_eval.score_dynamic(model, stream_ids(tokenizer), lr=0.3)
    for name, param in model.named_parameters():
        assert torch.equal(param, weights[name]), name


def test_the_table_says_dynamic(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    result = run_cli("eval", "--checkpoint", tmp_path / "run", "--device", "cpu", "--dynamic", "--seq-len", "30")
    assert result.code == 0, result.err
    assert "scoring: dynamic (SGD lr 0.05, decay 0.001, segments of 30 tokens)" in result.out


def test_the_command_line_defaults_are_the_module_defaults():
    assert (eval_command.DYNAMIC_LR, eval_command.DYNAMIC_DECAY, eval_command.DYNAMIC_SEQ_LEN) == (
        dynamic_eval.DEFAULT_LR,
        dynamic_eval.DEFAULT_DECAY,
        dynamic_eval.DEFAULT_SEQ_LEN,
    )


def test_bad_values_are_one_error_line(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    make_checkpoint(tmp_path / "docs", folder_corpus, batching="documents")
    run = tmp_path / "run"
    assert_one_error_line(run_cli("eval", "--checkpoint", run, "--dynamic", "--dynamic-lr", "-0.1"), "--dynamic-lr")
    assert_one_error_line(
        run_cli("eval", "--checkpoint", run, "--dynamic", "--dynamic-decay", "1.5"), "--dynamic-decay"
    )
    assert_one_error_line(run_cli("eval", "--checkpoint", run, "--dynamic", "--dynamic-lr", "nan"), "--dynamic-lr")
    assert_one_error_line(
        run_cli("eval", "--checkpoint", run, "--dynamic", "--dynamic-decay", "nan"), "--dynamic-decay"
    )
    assert_one_error_line(run_cli("eval", "--checkpoint", tmp_path / "docs", "--dynamic"), "--batching documents")
