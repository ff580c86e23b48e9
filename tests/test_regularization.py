"""AWD-LSTM's regularizers: embedding dropout (--embedding-dropout), AR and TAR (--ar, --tar)."""

import json

import pytest
import torch

from conftest import SMALL_VOCAB as VOCAB
from conftest import small_model as make_model
from textlstm.config import ModelConfig
from textlstm.model.activation_penalty import activation_penalty
from textlstm.model.dropout import embedding_row_scales
from textlstm.tokens import PAD_ID

# ----------------------------------------------------------------------------- embedding dropout


def test_embedding_dropout_drops_every_occurrence_of_a_token_together():
    p = 0.5
    model = make_model(embedding_dropout=p).train()
    ids = torch.randint(2, 8, (4, 25))  # few distinct tokens, each many times
    torch.manual_seed(11)
    vectors = model._embed(ids)
    dropped = (vectors == 0).all(dim=-1)
    for token in ids.unique():
        assert dropped[ids == token].all() or not dropped[ids == token].any(), int(token)
    assert dropped.any() and not dropped.all()
    torch.testing.assert_close(vectors[~dropped], model.embedding(ids)[~dropped] / (1 - p))


def test_embedding_dropout_is_the_model_with_those_embedding_rows_scaled():
    """The whole forward pass in training equals an eval-mode model whose embedding matrix has the
    mask's rows zeroed and the rest scaled: one mask for the batch, shared by all rows and steps."""
    p = 0.4
    model = make_model(embedding_dropout=p).train()
    ids = torch.randint(2, VOCAB, (3, 12))
    torch.manual_seed(5)
    scales = embedding_row_scales(VOCAB, p, "cpu", torch.float32)
    assert (scales == 0).any()
    torch.manual_seed(5)
    trained, _ = model(ids)
    masked = make_model().eval()
    masked.load_state_dict(model.state_dict())
    with torch.no_grad():
        masked.embedding.weight.mul_(scales[:, None])
    torch.testing.assert_close(trained, masked(ids)[0])


def test_embedding_dropout_is_off_in_eval_mode_and_in_step():
    model = make_model(embedding_dropout=0.5).eval()
    plain = make_model(embedding_dropout=0.0).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.randint(2, VOCAB, (2, 6))
    torch.testing.assert_close(model(ids)[0], plain(ids)[0])
    torch.testing.assert_close(model.step(ids[:, 0])[0], plain.step(ids[:, 0])[0])


# ----------------------------------------------------------------------------- AR and TAR


def penalty_by_hand(model, sequences, ar, tar):
    """AR and TAR from each sequence run alone: means over all real steps of all rows."""
    squares = differences = steps = pairs = 0.0
    for seq in sequences:
        h, _ = model.hidden_states(seq[None])  # no dropout: before and after are the same
        squares += float(h.pow(2).sum())
        differences += float((h[0, 1:] - h[0, :-1]).pow(2).sum())
        steps, pairs = steps + len(seq), pairs + len(seq) - 1
    hidden = model.config.hidden_size
    return ar * squares / (steps * hidden) + tar * differences / (pairs * hidden)


@pytest.mark.parametrize("width", [7, 12])
def test_ar_and_tar_are_means_over_real_steps_only(width):
    """Padded documents: padding steps add nothing and count for nothing, however wide the batch."""
    model = make_model().train()
    sequences = [torch.randint(2, VOCAB, (n,)) for n in (7, 3, 5)]
    batch = torch.full((3, width), PAD_ID)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    lengths = torch.tensor([len(s) for s in sequences])
    targets = torch.where(batch == PAD_ID, PAD_ID, 2 + (batch + 1) % (VOCAB - 2))
    with torch.no_grad():
        _, _, _, penalty = model.regularized_loss(batch, targets, None, lengths, 2.0, 1.0)
        expected = penalty_by_hand(model, sequences, 2.0, 1.0)
    assert float(penalty) == pytest.approx(expected, rel=1e-5)


def test_ar_reads_the_outputs_after_dropout_and_tar_before():
    torch.manual_seed(0)
    outputs = torch.randn(2, 5, 4)
    dropped = outputs * (torch.rand(2, 5, 4) > 0.5) * 2
    ar_only = activation_penalty(outputs, dropped, None, 1.0, 0.0)
    tar_only = activation_penalty(outputs, dropped, None, 0.0, 1.0)
    torch.testing.assert_close(ar_only, dropped.pow(2).mean())
    torch.testing.assert_close(tar_only, (outputs[:, 1:] - outputs[:, :-1]).pow(2).mean())


def test_regularized_loss_reports_the_plain_loss_and_no_penalty_when_off():
    model = make_model().train()
    ids = torch.randint(2, VOCAB, (2, 9))
    total, count, _ = model.loss(ids, ids)
    regularized_total, regularized_count, _, penalty = model.regularized_loss(ids, ids, None, None, 2.0, 1.0)
    torch.testing.assert_close(regularized_total, total)
    assert int(regularized_count) == int(count) and float(penalty.detach()) > 0
    assert model.regularized_loss(ids, ids, None, None, 0.0, 0.0)[3] is None


# ----------------------------------------------------------------------------- in training


def tiny_run(corpus, **train):
    from textlstm.config import DataConfig, RunConfig, TrainConfig

    settings = dict(
        batch_size=4,
        seq_len=32,
        max_steps=3,
        eval_every=100,
        warmup_steps=0,
        seed=3,
        precision="float32",
        ar=0.0,
        tar=0.0,
    )
    return RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(dataset=str(corpus)),
        train=TrainConfig(**settings | train),
    )


def test_ar_and_tar_change_the_training_but_not_the_reported_loss(small_corpus, tmp_path):
    from textlstm.training.trainer import Reporter, train

    class StepLosses(Reporter):
        def __init__(self):
            self.losses = []

        def step(self, step, loss, tokens_per_sec, lr):
            self.losses.append(loss)

    plain, regularized = StepLosses(), StepLosses()
    train(tiny_run(small_corpus), output=tmp_path / "plain", reporter=plain)
    train(tiny_run(small_corpus, ar=2.0, tar=1.0), output=tmp_path / "regularized", reporter=regularized)
    assert regularized.losses[0] == plain.losses[0]  # the same weights: the cross-entropy alone is reported
    assert regularized.losses[2] != pytest.approx(plain.losses[2], abs=1e-6)  # the steps between moved differently


def test_the_options_are_saved_with_the_run_and_fixed_on_resume(run_cli, small_corpus, tmp_path):
    from conftest import TINY_MODEL

    out = tmp_path / "run"
    options = ("--embedding-dropout", "0.1", "--ar", "2", "--tar", "1", "--ema", "0.99")
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, *options, "--max-steps", "3", "--output", out)
    assert result.code == 0, result.err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["embedding_dropout"] == 0.1
    assert (saved["train"]["ar"], saved["train"]["tar"], saved["train"]["ema"]) == (2.0, 1.0, 0.99)
    assert run_cli("train", "--resume", out, *options, "--max-steps", "4").code == 0
    refused = run_cli("train", "--resume", out, "--ar", "3", "--max-steps", "5")
    assert refused.code == 2 and "--ar cannot change when resuming" in refused.err


@pytest.mark.slow
def test_two_processes_train_with_ar_tar_and_ema_as_one_does(run_cli, small_corpus, tmp_path):
    """Each process's penalty is the mean over its rows and DDP averages the gradients, so with
    equal rows per process two train what one trains; the average is of the same weights on each."""
    import os
    import subprocess
    import sys

    common = (
        "train",
        "--dataset",
        small_corpus,
        "--embedding-size",
        "16",
        "--hidden-size",
        "32",
        "--layers",
        "2",
        "--batch-size",
        "4",
        "--seq-len",
        "64",
        "--max-steps",
        "20",
        "--eval-every",
        "10",
        "--dropout",
        "0",
        "--recurrent-dropout",
        "0",
        "--schedule",
        "constant",
        "--warmup-steps",
        "3",
        "--lr",
        "0.01",
        "--seed",
        "5",
        "--precision",
        "float32",
        "--ar",
        "2",
        "--tar",
        "1",
        "--ema",
        "0.9",
    )
    alone = run_cli(*common, "--output", tmp_path / "alone")
    assert alone.code == 0, alone.err
    two = subprocess.run(
        [sys.executable, "-m", "textlstm", *map(str, common), "--nproc", "2", "--output", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    assert two.returncode == 0, two.stderr
    records = [
        [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("alone", "two")
    ]
    assert [r["step"] for r in records[1]] == [r["step"] for r in records[0]] == [10, 20]
    for one, both in zip(*records):
        assert both["valid_loss"] == pytest.approx(one["valid_loss"], abs=1e-4)
        assert both["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)
