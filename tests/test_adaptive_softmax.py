"""The adaptive softmax output layer: an exact distribution, trainable from the CLI, usable for sampling."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY_MODEL
from textlstm.config import ModelConfig
from textlstm.errors import TextlstmError
from textlstm.model.network import ADAPTIVE_FROM, LSTMLanguageModel, default_cutoffs, model_config_for
from textlstm.tokens import PAD_ID


def make_model(**settings) -> LSTMLanguageModel:
    torch.manual_seed(0)
    config = dict(
        vocab_size=60, embedding_size=12, hidden_size=20, layers=2, output_layer="adaptive", adaptive_cutoffs=[6, 25]
    )
    return LSTMLanguageModel(ModelConfig(**{**config, **settings})).eval()


def test_next_token_distribution_sums_to_one():
    model = make_model()
    log_probs, _ = model(torch.randint(2, 60, (3, 9)))
    assert log_probs.shape == (3, 9, 60)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 9))
    torch.testing.assert_close(model.logits(torch.randn(20)).exp().sum(), torch.tensor(1.0))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_weights_held_in_half_precision_give_a_distribution(dtype):
    """As generate, chat and serve hold them with --precision bfloat16 or float16 (auto on a CPU with bf16)."""
    model = make_model().to(dtype)
    log_probs, _ = model.step(torch.tensor([3, 7]))
    torch.testing.assert_close(log_probs.float().exp().sum(-1), torch.ones(2), atol=0.02, rtol=0)


def test_loss_is_the_negative_log_probability_of_the_targets():
    model = make_model()
    ids, targets = torch.randint(2, 60, (3, 9)), torch.randint(1, 60, (3, 9))
    targets[0, :4] = PAD_ID
    total, count, _ = model.loss(ids, targets)
    log_probs, _ = model(ids)
    expected = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)[targets != PAD_ID].sum()
    assert count.item() == (targets != PAD_ID).sum().item()
    torch.testing.assert_close(total, expected)


def test_loss_with_padded_rows_matches_rows_alone():
    model = make_model()
    ids, targets = torch.randint(2, 60, (2, 7)), torch.randint(1, 60, (2, 7))
    ids[1, 4:], targets[1, 4:] = PAD_ID, PAD_ID
    total, _, _ = model.loss(ids, targets, lengths=torch.tensor([7, 4]))
    alone = model.loss(ids[:1], targets[:1])[0] + model.loss(ids[1:, :4], targets[1:, :4])[0]
    torch.testing.assert_close(total, alone)


def test_default_cutoffs_fit_the_vocabulary():
    assert default_cutoffs(50_000) == [2_000, 10_000]
    assert default_cutoffs(10_000) == [2_000]
    assert default_cutoffs(300) == [75]


def test_tied_weights_are_refused_clearly():
    with pytest.raises(TextlstmError, match="tie-weights"):
        ModelConfig(vocab_size=60, output_layer="adaptive", tie_weights=True)
    with pytest.raises(TextlstmError, match="below the vocabulary size"):
        ModelConfig(vocab_size=60, output_layer="adaptive", adaptive_cutoffs=[10, 60])
    with pytest.raises(TextlstmError, match="needs --output-layer adaptive"):
        ModelConfig(vocab_size=60, output_layer="full", adaptive_cutoffs=[10])


class Vocabulary:
    def __init__(self, size: int):
        self.vocab_size, self.byte_fallback_start = size, None


def test_the_output_layer_left_at_auto_is_adaptive_from_4096_tokens_and_full_below():
    def resolved(size: int, **model) -> str:
        return model_config_for(ModelConfig(**model), Vocabulary(size)).output_layer

    assert (resolved(ADAPTIVE_FROM - 1), resolved(ADAPTIVE_FROM)) == ("full", "adaptive")
    assert resolved(100, adaptive_cutoffs=[10]) == "adaptive"  # cutoffs given ask for it
    assert resolved(ADAPTIVE_FROM, tie_weights=True) == "full"  # nothing to tie in an adaptive softmax
    assert resolved(ADAPTIVE_FROM, output_layer="full") == "full"  # a given layer is kept
    # Under autocast PyTorch's adaptive softmax fails on CUDA (pytorch/pytorch#44724): auto keeps the full one.
    assert model_config_for(ModelConfig(), Vocabulary(ADAPTIVE_FROM), "bfloat16").output_layer == "full"


def test_word_model_trains_and_generates_from_the_cli(run_cli, small_corpus, tmp_path):
    output = tmp_path / "adaptive-run"
    trained = run_cli(
        "train",
        "--dataset",
        small_corpus,
        "--tokenizer",
        "word",
        "--vocab-size",
        "400",
        *TINY_MODEL,
        "--output-layer",
        "adaptive",
        "--adaptive-cutoffs",
        "50,150",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--eval-tokens",
        "500",
        "--output",
        output,
    )
    assert trained.code == 0, trained.out + trained.err
    config = json.loads((output / "config.json").read_text())
    assert config["model"]["output_layer"] == "adaptive" and config["model"]["adaptive_cutoffs"] == [50, 150]
    generated = run_cli("generate", "--checkpoint", output, "--prompt", "The king", "--max-tokens", "20", "--seed", "1")
    assert generated.code == 0, generated.out + generated.err
    assert generated.out.startswith("The king") and len(generated.out) > len("The king")


def test_tie_weights_with_adaptive_is_one_line_in_the_cli(run_cli, small_corpus):
    result = run_cli(
        "train", "--dataset", small_corpus, "--tokenizer", "word", "--output-layer", "adaptive", "--tie-weights"
    )
    assert result.code != 0
    assert "tie-weights" in result.err and "Traceback" not in result.err


def test_evaluation_scores_the_exact_log_probability():
    from textlstm.evaluation.scoring import evaluate_split

    model = make_model()
    ids = torch.randint(2, 60, (200,))
    total, count, _ = model.loss(ids[None, :-1], ids[None, 1:])
    result = evaluate_split(model, ids.numpy(), batch_size=1, seq_len=50, burn_in=0)
    assert result.tokens == count.item() == 199
    assert abs(result.loss_sum - total.item()) < 1e-3
