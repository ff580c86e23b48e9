"""The char model's output layer: byte-fallback tokens on one shared output, biases started at the
unigram frequencies (issue 10: the 256 never-seen byte tokens held back the first hundreds of steps)."""

import json
import math
from collections import Counter

import pytest
import torch

from conftest import TINY_CORPUS, TINY_MODEL
from textlstm.config import ModelConfig
from textlstm.data.tokenizer import build_tokenizer
from textlstm.model.network import LSTMLanguageModel, model_config_for
from textlstm.runs.checkpoint import load_checkpoint
from textlstm.training.trainer import token_counts

UNSEEN = "naïve café 😀 ok"  # characters the tiny corpus never had: they are read as UTF-8 bytes


def char_model(**settings):
    tokenizer = build_tokenizer("char", [TINY_CORPUS])
    config = model_config_for(
        ModelConfig(embedding_size=8, hidden_size=16, layers=2, dropout=0, recurrent_dropout=0, **settings), tokenizer
    )
    torch.manual_seed(0)
    return LSTMLanguageModel(config).eval(), tokenizer


def test_only_char_tokenizers_have_a_byte_block():
    assert build_tokenizer("char", [TINY_CORPUS]).byte_fallback_start == 2
    assert build_tokenizer("word", [TINY_CORPUS * 3]).byte_fallback_start is None
    assert build_tokenizer("bpe", [TINY_CORPUS * 3], vocab_size=300).byte_fallback_start is None


def test_the_byte_tokens_share_one_output():
    model, tokenizer = char_model()
    assert model.config.byte_fallback_start == 2 and model.decoder is None
    assert model.byte_softmax.head.out_features == tokenizer.vocab_size - 255
    tied, _ = char_model(tie_weights=True)  # a tied output matrix needs one row per token
    assert tied.config.byte_fallback_start is None and tied.decoder.out_features == tokenizer.vocab_size


def test_the_distribution_covers_every_token_and_sums_to_one():
    model, tokenizer = char_model()
    with torch.no_grad():
        model.byte_softmax.bytes.weight.mul_(10)  # so the bytes' own distribution is far from uniform
        logits, _ = model(torch.tensor([tokenizer.encode(UNSEEN)]))
        step_logits, _ = model.step(torch.tensor(tokenizer.encode("n")))
    assert logits.shape[-1] == tokenizer.vocab_size
    torch.testing.assert_close(torch.logsumexp(logits, -1), torch.zeros(logits.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(step_logits[0], logits[0, 0], atol=1e-5, rtol=1e-5)


def test_the_loss_is_the_log_probability_of_targets_that_include_bytes():
    model, tokenizer = char_model()
    ids = torch.tensor([tokenizer.encode(UNSEEN)])
    inputs, targets = ids[:, :-1], ids[:, 1:]
    assert (targets < 2 + 256).any() and (targets >= 2 + 256).any()  # bytes and characters
    loss, count, _ = model.loss(inputs, targets)
    logits, _ = model(inputs)
    expected = -logits.log_softmax(-1).gather(-1, targets[..., None]).sum()
    assert int(count) == targets.numel()
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-5)
    loss.backward()
    assert model.byte_softmax.bytes.weight.grad.abs().sum() > 0


def test_output_biases_start_at_the_unigram_frequencies():
    model, tokenizer = char_model()
    ids = tokenizer.encode(TINY_CORPUS * 20)
    model.init_output_bias(token_counts(ids, tokenizer.vocab_size))
    with torch.no_grad():
        model.byte_softmax.head.weight.zero_()  # leave the bias alone: the prediction is the unigram distribution
        logits, _ = model(torch.tensor([ids[:50]]))
    probs = logits[0, 0].exp()
    frequencies = Counter(ids)
    for token, count in frequencies.items():
        assert probs[token] == pytest.approx(count / len(ids), rel=3e-3)  # unseen ids take a little
    byte_block = probs[2 : 2 + 256].sum()
    assert byte_block == pytest.approx(0.5 / len(ids), rel=1e-2)  # never seen: half an occurrence for all 256


def test_training_starts_at_the_unigram_distribution(run_cli, small_corpus, tmp_path):
    """After one step at a warmup learning rate the model still predicts the unigram distribution of
    the training text: its validation loss is that distribution's cross-entropy on the validation
    text. Before the fix it was near log(vocabulary) = 5.8 nats, and a char model spent its first
    hundreds of steps getting down to the unigram level."""
    text = small_corpus.read_text(encoding="utf-8")
    boundary = int(len(text) * 0.9)  # the corpus loader's split, to within a line
    train_counts, valid_text = Counter(text[:boundary]), text[boundary:]
    unigram = sum(-math.log(train_counts[char] / boundary) for char in valid_text) / len(valid_text)
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "1", "--output", out)
    assert result.code == 0, result.err
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["valid_loss"] == pytest.approx(unigram, abs=0.1)
    model, tokenizer, config = load_checkpoint(out)
    assert config.model.byte_fallback_start == 2
    ids = torch.tensor([tokenizer.encode(UNSEEN)])
    loss, count, _ = model.loss(ids[:, :-1], ids[:, 1:])
    assert math.isfinite(float(loss)) and int(count) == ids.shape[1] - 1
