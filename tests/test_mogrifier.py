"""`--cell mogrifier`: the Mogrifier LSTM, its sequence and one-step paths, training and checkpoints."""

import json

import pytest
import torch

from conftest import SMALL_VOCAB as VOCAB
from conftest import TINY_MODEL, small_model
from textlstm.config import ModelConfig
from textlstm.errors import TextlstmError
from textlstm.model.network import LSTMLanguageModel
from textlstm.model.summary import layer_rows
from textlstm.runs.checkpoint import load_checkpoint
from textlstm.tokens import PAD_ID


def make_model(**overrides) -> LSTMLanguageModel:
    return small_model(**{"cell": "mogrifier", "mogrifier_rounds": 5} | overrides)


def padded_batch(lengths):
    torch.manual_seed(1)
    batch = torch.full((len(lengths), max(lengths)), PAD_ID)
    for row, n in enumerate(lengths):
        batch[row, :n] = torch.randint(2, VOCAB, (n,))
    return batch, torch.tensor(lengths)


def test_zero_rounds_is_the_plain_lstm_with_the_same_weights():
    plain = make_model(cell="lstm").eval()
    mogrifier = make_model(mogrifier_rounds=0).eval()
    assert mogrifier.load_state_dict(plain.state_dict())  # strict: no weights of its own
    ids = torch.randint(2, VOCAB, (3, 11))
    expected, (h, c) = plain(ids)
    logits, (h0, c0) = mogrifier(ids)
    # The fused kernel and the per-step cell differ only by float rounding.
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(h0, h)
    torch.testing.assert_close(c0, c)


def test_the_rounds_gate_x_and_h_alternately_as_the_paper_writes():
    model = make_model(layers=1, mogrifier_rounds=3).eval()
    ids = torch.randint(2, VOCAB, (2, 4))
    q1, r2, q3 = model.mogrifiers[0].rounds
    w_ih, w_hh, b_ih, b_hh = model._layer_weights(0)
    x_all = model.embedding(ids)
    h, c = torch.zeros(2, 12), torch.zeros(2, 12)
    for t in range(4):
        x = x_all[:, t]
        x = 2 * torch.sigmoid(h @ q1.T) * x
        h = 2 * torch.sigmoid(x @ r2.T) * h
        x = 2 * torch.sigmoid(h @ q3.T) * x
        i, f, g, o = (x @ w_ih.T + h @ w_hh.T + b_ih + b_hh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    _, (h_model, c_model) = model(ids)
    torch.testing.assert_close(h_model[0], h)
    torch.testing.assert_close(c_model[0], c)
    # and the gating does something: the plain LSTM on the same weights ends elsewhere
    plain = make_model(layers=1, cell="lstm").eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.allclose(plain(ids)[1][0], h_model, atol=1e-4)


def test_step_by_step_equals_the_sequence():
    model = make_model().eval()
    ids = torch.randint(2, VOCAB, (3, 9))
    whole, (h, c) = model(ids)
    state, steps = None, []
    for t in range(ids.shape[1]):
        logits, state = model.step(ids[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole)
    torch.testing.assert_close(state[0], h)
    torch.testing.assert_close(state[1], c)


def test_padded_rows_equal_each_row_alone():
    """Padded documents in training, and prompts read together from their own states in serve."""
    model = make_model().eval()
    batch, lengths = padded_batch([4, 9, 6])
    start = (torch.randn(2, 3, 12), torch.randn(2, 3, 12))
    logits, (h, c) = model(batch, start, lengths=lengths)
    hidden, _ = model.hidden_states(batch, start, lengths=lengths)
    for row, n in enumerate(lengths.tolist()):
        alone, (h1, c1) = model(batch[row : row + 1, :n], (start[0][:, row : row + 1], start[1][:, row : row + 1]))
        torch.testing.assert_close(logits[row, :n], alone[0])
        torch.testing.assert_close(h[:, row], h1[:, 0])
        torch.testing.assert_close(c[:, row], c1[:, 0])
        assert (hidden[row, n:] == 0).all()  # as the packed LSTM path returns them


def test_recurrent_dropout_mask_is_fixed_over_the_sequence():
    """In training, `_layer_weights` (the W_hh column mask) is drawn once per layer per sequence."""
    model = make_model(recurrent_dropout=0.5).train()
    ids = torch.randint(2, VOCAB, (2, 7))
    draws = []
    original = model._layer_weights
    model._layer_weights = lambda layer: draws.append(layer) or original(layer)
    loss, _, _ = model.loss(ids, ids)
    assert draws == [0, 1]
    loss.backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in model.mogrifiers.parameters())


def test_bfloat16_autocast_matches_float32():
    model = make_model(hidden_size=32, embedding_size=16).eval()
    ids = torch.randint(2, VOCAB, (2, 20))
    loss32, count, _ = model.loss(ids, ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _, state = model.loss(ids, ids)
    assert float(loss16.detach()) == pytest.approx(float(loss32.detach()), rel=0.02)
    model.train()
    lengths = torch.tensor([20, 13])  # and padded documents
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, count, _ = model.loss(ids, torch.where(torch.arange(20) < lengths[:, None], ids, PAD_ID), lengths=lengths)
    assert int(count) == 33
    loss.backward()
    assert model.mogrifiers[0].rounds[0].grad.dtype == torch.float32


def test_summary_counts_the_mogrifier_weights():
    model = LSTMLanguageModel(
        ModelConfig(vocab_size=300, embedding_size=16, hidden_size=32, layers=2, cell="mogrifier", mogrifier_rounds=5)
    )
    rows = {row.name: row for row in layer_rows(model)}
    assert sum(row.parameters for row in rows.values()) == sum(p.numel() for p in model.parameters())
    lstm = 4 * 32 * (16 + 32 + 2)
    mogrifier = 5 * 16 * 32  # 3 Q [16, 32] and 2 R [32, 16]
    assert rows["lstm_1"].parameters == lstm + mogrifier
    assert "Mogrifier LSTM (5 rounds" in rows["lstm_1"].kind and f"{mogrifier:,}" in rows["lstm_1"].kind
    assert rows["lstm_2"].parameters == 4 * 32 * (32 + 32 + 2) + 5 * 32 * 32


def test_bad_settings_are_refused():
    with pytest.raises(TextlstmError, match="cell must be lstm or mogrifier"):
        ModelConfig(cell="gru")
    with pytest.raises(TextlstmError, match="mogrifier-rounds must not be negative"):
        ModelConfig(mogrifier_rounds=-1)


def valid_losses(folder) -> list[float]:
    return [json.loads(line)["valid_loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("batching", ["stream", "documents"])
def test_training_learns_and_the_checkpoint_reloads(run_cli, small_corpus, tmp_path, batching):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--cell",
        "mogrifier",
        "--mogrifier-rounds",
        "4",
        "--batching",
        batching,
        "--max-steps",
        "50",
        "--eval-every",
        "10",
        "--eval-tokens",
        "4000",
        "--lr",
        "0.01",
        "--precision",
        "float32",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    assert "Mogrifier LSTM (4 rounds" in result.err
    losses = valid_losses(out)
    assert losses[-1] < losses[0] - 0.2, losses
    saved = json.loads((out / "config.json").read_text())["model"]
    assert saved["cell"] == "mogrifier" and saved["mogrifier_rounds"] == 4

    model, _, _ = load_checkpoint(out)
    assert model.mogrifiers is not None and len(model.mogrifiers[0].rounds) == 4
    for precision in ("float32", "bfloat16"):  # bfloat16: the weights and the state held in bfloat16
        result = run_cli(
            "generate",
            "--checkpoint",
            out,
            "--prompt",
            "To be",
            "--max-tokens",
            "20",
            "--seed",
            "1",
            "--precision",
            precision,
        )
        assert result.code == 0, result.err
        assert result.out.startswith("To be") and len(result.out) > len("To be")
    result = run_cli("eval", "--checkpoint", out, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["loss"] == pytest.approx(min(losses), rel=0.1)


def test_resume_and_fine_tuning_keep_the_cell(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--cell",
        "mogrifier",
        "--mogrifier-rounds",
        "2",
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--eval-tokens",
        "500",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    result = run_cli("train", "--resume", out, "--cell", "lstm", "--max-steps", "3")
    assert result.code != 0
    assert "--cell cannot change when resuming" in result.err

    result = run_cli(
        "train",
        "--init-from",
        out,
        "--dataset",
        small_corpus,
        "--mogrifier-rounds",
        "3",
        "--max-steps",
        "2",
        "--output",
        tmp_path / "child",
    )
    assert result.code != 0
    assert "--mogrifier-rounds 3 (the parent has 2)" in result.err
    child = tmp_path / "child"
    result = run_cli(
        "train",
        "--init-from",
        out,
        "--dataset",
        small_corpus,
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--eval-tokens",
        "500",
        "--output",
        child,
    )
    assert result.code == 0, result.err
    model, _, config = load_checkpoint(child)
    assert config.model.cell == "mogrifier" and len(model.mogrifiers[0].rounds) == 2
