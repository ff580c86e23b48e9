import pytest
import torch
import torch.nn.functional as F

from conftest import SMALL_VOCAB as VOCAB
from conftest import small_model as make_model
from textlstm.tokens import PAD_ID


def test_padded_batch_equals_each_sequence_run_alone():
    model = make_model().eval()
    sequences = [torch.randint(2, VOCAB, (n,)) for n in (7, 3, 5)]
    width = max(len(s) for s in sequences)
    batch = torch.full((len(sequences), width), PAD_ID)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    lengths = torch.tensor([len(s) for s in sequences])
    targets = torch.where(batch == PAD_ID, PAD_ID, 2 + (batch + 1) % (VOCAB - 2))  # never PAD where real

    logits, (h, c) = model(batch, lengths=lengths)
    batch_loss, batch_count, _ = model.loss(batch, targets, lengths=lengths)

    alone_loss = 0.0
    for row, seq in enumerate(sequences):
        alone_logits, (h1, c1) = model(seq[None])
        torch.testing.assert_close(logits[row, : len(seq)], alone_logits[0])
        torch.testing.assert_close(h[:, row], h1[:, 0])
        torch.testing.assert_close(c[:, row], c1[:, 0])
        loss, count, _ = model.loss(seq[None], targets[row, : len(seq)][None])
        alone_loss += float(loss.detach())
        assert int(count) == len(seq)
    assert int(batch_count) == int(lengths.sum())
    assert abs(float(batch_loss.detach()) - alone_loss) < 1e-4


def test_padding_positions_add_no_loss():
    model = make_model().eval()
    ids = torch.randint(2, VOCAB, (1, 6))
    targets = torch.randint(2, VOCAB, (1, 6))
    padded_targets = targets.clone()
    padded_targets[0, 4:] = PAD_ID
    loss_all, count_all, _ = model.loss(ids, targets)
    loss_pad, count_pad, _ = model.loss(ids, padded_targets)
    assert int(count_pad) == 4 and int(count_all) == 6
    logits, _ = model(ids)
    per_position = F.cross_entropy(logits[0], targets[0], reduction="none")
    torch.testing.assert_close(loss_all, per_position.sum())
    torch.testing.assert_close(loss_pad, per_position[:4].sum())  # the padded positions' terms, and only those, gone


def manual_lstm_with_fixed_masks(model, ids, masks):
    """A per-time-step loop that multiplies h(t-1) by a fixed mask: recurrent dropout by definition."""
    return model.logits(per_step_lstm(model, ids, masks)[0])


def test_recurrent_dropout_is_a_mask_on_h_fixed_over_time():
    p = 0.5
    model = make_model(recurrent_dropout=p).train()
    ids = torch.randint(2, VOCAB, (3, 9))
    torch.manual_seed(123)
    masks = [torch.empty(model.config.hidden_size).bernoulli_(1 - p) / (1 - p) for _ in range(model.config.layers)]
    assert any((m == 0).any() for m in masks)
    torch.manual_seed(123)
    fused, _ = model(ids)
    torch.testing.assert_close(fused, manual_lstm_with_fixed_masks(model, ids, masks), rtol=1e-4, atol=1e-5)


def test_packed_documents_with_recurrent_dropout_equal_a_per_step_loop():
    """The documents path: padded rows run packed through `_run_lstm` with one W_hh column mask per
    layer, shared by the rows and fixed over time; each row must equal the per-step loop over that
    row alone with the same masks, and the state must be the one after the row's last real token."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    p = 0.5
    model = make_model(recurrent_dropout=p).train()
    hidden = model.config.hidden_size
    sequences = [torch.randint(2, VOCAB, (n,)) for n in (4, 9, 6)]
    batch = torch.full((3, 9), PAD_ID)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = seq
    lengths = torch.tensor([len(s) for s in sequences])
    torch.manual_seed(123)
    masks = [torch.empty(hidden).bernoulli_(1 - p) / (1 - p) for _ in range(model.config.layers)]
    assert any((m == 0).any() for m in masks)

    torch.manual_seed(123)
    packed = pack_padded_sequence(model.embedding(batch), lengths, batch_first=True, enforce_sorted=False)
    output, (h, c) = model._run_lstm(packed, model.initial_state(3))
    output, _ = pad_packed_sequence(output, batch_first=True, total_length=9)

    for row, seq in enumerate(sequences):
        expected, (h_row, c_row) = per_step_lstm(model, seq[None], masks)
        torch.testing.assert_close(output[row, : len(seq)], expected[0], rtol=1e-4, atol=1e-5)
        assert (output[row, len(seq) :] == 0).all()
        torch.testing.assert_close(h[:, row], h_row[:, 0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(c[:, row], c_row[:, 0], rtol=1e-4, atol=1e-5)


def per_step_lstm(model, ids, masks):
    """The stacked LSTM one time step at a time, h(t-1) multiplied by a fixed mask per layer: the
    top layer's outputs [batch, time, hidden] and the final (h, c), each [layers, batch, hidden]."""
    x = model.embedding(ids)
    hs, cs = [], []
    for layer, mask in enumerate(masks):
        w_ih, w_hh = getattr(model.lstm, f"weight_ih_l{layer}"), getattr(model.lstm, f"weight_hh_l{layer}")
        bias = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        h = x.new_zeros(x.shape[0], model.config.hidden_size)
        c = torch.zeros_like(h)
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = (x[:, t] @ w_ih.T + (h * mask) @ w_hh.T + bias).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
        hs.append(h)
        cs.append(c)
    return x, (torch.stack(hs), torch.stack(cs))


def test_recurrent_dropout_trains_and_is_off_in_eval_mode():
    model = make_model(recurrent_dropout=0.5)
    ids = torch.randint(2, VOCAB, (2, 5))
    model.train()
    first, _ = model(ids)
    second, _ = model(ids)
    assert not torch.allclose(first, second)
    loss, count, _ = model.loss(ids, ids)
    loss.backward()
    assert model.lstm.weight_hh_l0.grad is not None and model.lstm.weight_hh_l0.grad.abs().sum() > 0
    model.eval()
    plain = make_model(recurrent_dropout=0.0).eval()
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(ids)[0], plain(ids)[0])


def test_state_carries_across_calls():
    model = make_model().eval()
    ids = torch.randint(2, VOCAB, (2, 10))
    whole, _ = model(ids)
    head, state = model(ids[:, :6])
    tail, _ = model(ids[:, 6:], state)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), whole)


def test_tied_weights_share_the_embedding_even_with_a_projection():
    model = make_model(tie_weights=True, embedding_size=8, hidden_size=12)
    assert model.decoder.weight is model.embedding.weight
    assert model.projection is not None
    logits, _ = model(torch.randint(2, VOCAB, (1, 4)))
    assert logits.shape == (1, 4, VOCAB)


def test_bfloat16_step_with_packed_gate_weights_follows_the_weights_and_the_cell(monkeypatch):
    """A bfloat16 model on the CPU steps through gate weights laid out once (model/packed_gates.py):
    within bfloat16 rounding of torch.lstm_cell's steps, a row independent of its batch, and laid
    out again after a weight changes."""
    from textlstm.model import network, packed_gates

    model = make_model().to(torch.bfloat16).eval()
    if packed_gates.packed_gates(model, model._layer_weights) is None:
        pytest.skip("this torch or CPU has no oneDNN bfloat16 kernels")
    ids = torch.randint(2, VOCAB, (6, 5), generator=torch.Generator().manual_seed(0))

    def logits_of_steps(rows: int = 6) -> torch.Tensor:
        state, logits = model.initial_state(rows), []
        for t in range(ids.shape[1]):
            step_logits, state = model.step(ids[:rows, t], state)
            logits.append(step_logits.float())
        return torch.stack(logits, dim=1)

    def through_lstm_cell() -> torch.Tensor:
        with monkeypatch.context() as patch:
            patch.setattr(network, "packed_gates", lambda model, weights: None)
            return logits_of_steps()

    with torch.inference_mode():
        packed = logits_of_steps()
        assert torch.equal(logits_of_steps(rows=1), packed[:1])
        torch.testing.assert_close(packed, through_lstm_cell(), atol=0.05, rtol=0.05)
        with torch.no_grad():
            model.lstm.weight_ih_l1.mul_(-20)
        changed = logits_of_steps()
        torch.testing.assert_close(changed, through_lstm_cell(), atol=0.05, rtol=0.05)
        assert (changed - packed).abs().max() > 0.1
