import pytest
import torch

from textlstm.model.dropout import LEVELS, FastDropout, drop_recurrent_columns, keep_mask

N = 400_000  # the kept fraction of N draws is within 0.001 of its expectation (one standard deviation)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fast_dropout_keeps_about_1_minus_p_and_preserves_the_expectation(p):
    torch.manual_seed(0)
    x = torch.full((N,), 2.0)
    y = FastDropout(p).train()(x)
    kept = y != 0
    assert float(kept.float().mean()) == pytest.approx(1 - p, abs=0.005)
    keep_probability = 1 - round(p * LEVELS) / LEVELS
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / keep_probability))
    assert float(y.mean()) == pytest.approx(2.0, abs=0.02)


def test_fast_dropout_masks_are_random_in_both_halves_of_each_draw():
    torch.manual_seed(0)
    keep, _ = keep_mask((N,), 0.5, "cpu")
    first, second = keep[0::2].float(), keep[1::2].float()  # the two 15-bit halves of one 32-bit integer
    assert float(first.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(second.mean()) == pytest.approx(0.5, abs=0.005)
    assert float((first == second).float().mean()) == pytest.approx(0.5, abs=0.005)
    again, _ = keep_mask((N,), 0.5, "cpu")
    assert float((again == keep).float().mean()) == pytest.approx(0.5, abs=0.005)


def test_fast_dropout_is_the_identity_in_eval_mode_and_at_p_0():
    x = torch.randn(100)
    assert torch.equal(FastDropout(0.5).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


def test_recurrent_dropout_drops_whole_columns_of_w_hh_and_rescales_the_rest():
    torch.manual_seed(0)
    weight = torch.randn(4 * 256, 256)
    dropped = drop_recurrent_columns(weight, 0.25)
    zero_columns = (dropped == 0).all(dim=0)
    assert float(zero_columns.float().mean()) == pytest.approx(0.25, abs=0.1)
    torch.testing.assert_close(dropped[:, ~zero_columns], weight[:, ~zero_columns] / 0.75)
    assert drop_recurrent_columns(weight, 0.0) is weight
