"""Tests for evaluation: `textlstm eval` against a plain token-by-token loop, independence from the
batch shape, per-character figures across tokenizers, and one-line errors on bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TRAIN_TEXT, VALID_TEXT
from textlstm.config import DataConfig, ModelConfig, RunConfig
from textlstm.data.corpora import load_corpus
from textlstm.data.token_ids import SplitInfo
from textlstm.data.tokenizer import tokenizer_for_corpus
from textlstm.evaluation.scoring import evaluate_checkpoint, evaluate_split
from textlstm.fileio import atomic_write, write_text
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs import checkpoint as ckpt
from textlstm.tokens import EOT_ID


def make_checkpoint(
    folder: Path,
    dataset: Path,
    kind: str = "char",
    vocab_size: int | None = None,
    seed: int = 0,
    batching: str = "stream",
):
    """A checkpoint with random weights (no training), shaped so that the LSTM state matters.

    Forget gates nearly shut make the cells remember for thousands of steps (an LSTM that a burn-in
    of a few hundred tokens cannot warm up); a larger output layer makes predictions peaky.
    """
    corpus = load_corpus(str(dataset))
    tokenizer = tokenizer_for_corpus(corpus, kind, vocab_size)
    config = RunConfig(
        model=ModelConfig(
            vocab_size=tokenizer.vocab_size,
            embedding_size=16,
            hidden_size=32,
            layers=2,
            dropout=0.0,
            recurrent_dropout=0.0,
        ),
        data=DataConfig(dataset=str(dataset), tokenizer=kind, vocab_size=vocab_size, batching=batching),
    )
    torch.manual_seed(seed)
    model = LSTMLanguageModel(config.model)
    hidden = config.model.hidden_size
    with torch.no_grad():
        for name, param in model.lstm.named_parameters():
            if name.startswith("bias_ih"):
                param[hidden : 2 * hidden] = 7.0
        model.decoder.weight.mul_(8.0)
    folder.mkdir(parents=True)
    write_text(folder / ckpt.CONFIG, config.to_json())
    atomic_write(folder / ckpt.TOKENIZER, tokenizer.save)
    ckpt.save_weights(model, folder / ckpt.BEST_WEIGHTS, step=0)
    return model.eval(), tokenizer


def loss_one_token_at_a_time(model: LSTMLanguageModel, ids: list[int]) -> float:
    """Summed nats: feed one token, take the log-probability of the next, carry the state."""
    total, state = 0.0, None
    with torch.no_grad():
        for current, following in zip(ids[:-1], ids[1:]):
            logits, state = model(torch.tensor([[current]]), state)
            total -= F.log_softmax(logits[0, -1].double(), dim=-1)[following].item()
    return total


def eval_json(run_cli, *args) -> dict:
    """`textlstm eval --json` in float32 (--precision auto may pick bfloat16): compared with float32 references."""
    result = run_cli("eval", "--json", "--device", "cpu", "--precision", "float32", *args)
    assert result.code == 0, result.err
    return json.loads(result.out)


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------- exactness


def test_eval_cli_matches_a_token_by_token_loop(tmp_path, folder_corpus, run_cli):
    model, tokenizer = make_checkpoint(tmp_path / "run", folder_corpus)
    ids = [EOT_ID, *tokenizer.encode(VALID_TEXT), EOT_ID]
    expected = loss_one_token_at_a_time(model, ids)

    got = eval_json(run_cli, "--checkpoint", tmp_path / "run")  # default batch 32: the text is cut into parts

    assert got["tokens"] == len(ids) - 1
    assert got["chars"] == len(VALID_TEXT) + 1  # the document end counts as one character
    assert got["bytes"] == len(VALID_TEXT.encode()) + 1
    assert got["perplexity"] == pytest.approx(math.exp(expected / (len(ids) - 1)), rel=1e-5)
    assert got["bits_per_char"] == pytest.approx(expected / math.log(2) / got["chars"], rel=1e-5)
    assert got["checkpoint"] == str(tmp_path / "run")


def test_result_does_not_depend_on_batch_size_or_seq_len(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    one_row = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--batch-size", "1", "--seq-len", "1000")
    for batch, seq_len in (("32", "256"), ("32", "7"), ("5", "64"), ("200", "3")):
        other = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--batch-size", batch, "--seq-len", seq_len)
        assert other["tokens"] == one_row["tokens"]
        assert other["perplexity"] == pytest.approx(one_row["perplexity"], rel=1e-5), (batch, seq_len)


def test_exact_even_when_the_model_remembers_longer_than_the_burn_in(tmp_path, folder_corpus):
    """Each part's start state is checked against the state the stream carries into it, so the
    result is exact however short the burn-in is."""
    model, tokenizer = make_checkpoint(tmp_path / "run", folder_corpus)
    ids = np.array([EOT_ID, *tokenizer.encode(VALID_TEXT), EOT_ID])
    with torch.no_grad():  # 1000 tokens on, this model's prediction still depends on where it started
        tail = torch.from_numpy(ids[None, 300:1300])
        cold, _ = model(tail)
        warm, _ = model(tail, model(torch.from_numpy(ids[None, :300]))[1])
    assert (cold[0, -1] - warm[0, -1]).abs().max() > 1e-2

    exact = evaluate_split(model, ids, batch_size=1).loss
    for burn_in in (0, 16, 1024):
        assert evaluate_split(model, ids, batch_size=32, burn_in=burn_in).loss == pytest.approx(exact, rel=1e-6)


def test_tiny_splits_and_the_token_cap(tmp_path, folder_corpus):
    model, tokenizer = make_checkpoint(tmp_path / "run", folder_corpus)
    ids = [EOT_ID, *tokenizer.encode(VALID_TEXT), EOT_ID]
    array = np.array(ids, dtype=np.uint16)
    info = SplitInfo(tokens=len(ids), chars=len(VALID_TEXT) + 1, bytes=len(VALID_TEXT) + 1, documents=1, dtype="uint16")

    for n in (2, 3, 5):  # fewer tokens than the batch has rows
        result = evaluate_split(model, array[:n], batch_size=32)
        assert result.tokens == n - 1
        assert result.loss_sum == pytest.approx(loss_one_token_at_a_time(model, ids[:n]), rel=1e-5)

    capped = evaluate_split(model, array, info, batch_size=8, seq_len=16, max_tokens=100)
    assert capped.tokens == 100
    assert capped.loss_sum == pytest.approx(loss_one_token_at_a_time(model, ids[:101]), rel=1e-5)
    assert capped.chars is None and capped.bits_per_char is None  # per-char figures need the whole split

    whole = evaluate_split(model, array, info, batch_size=8, max_tokens=10**9)
    assert whole.tokens == len(ids) - 1 and whole.chars == info.chars

    nothing = evaluate_split(model, array[:1], info)
    assert nothing.tokens == 0 and math.isnan(nothing.loss)


# ---------------------------------------------------------------- models trained on separate documents

DOCUMENTS = list(dict.fromkeys(line for line in (TRAIN_TEXT + VALID_TEXT).splitlines() if line)) * 2  # 16, 8 distinct


@pytest.fixture
def documents_corpus(tmp_path) -> Path:
    """A corpus of separate documents (one JSON row each) with its own validation split."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, rows in (("train", DOCUMENTS[::2]), ("validation", DOCUMENTS[1::2])):
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps({"text": row}) + "\n" for row in rows), encoding="utf-8"
        )
    return folder


def documents_scored_alone(model, tokenizer, documents: list[str]) -> float:
    """Summed nats of each document `EOT text EOT` scored from a zero state, as training read them."""
    return sum(loss_one_token_at_a_time(model, [EOT_ID, *tokenizer.encode(text), EOT_ID]) for text in documents)


def test_a_documents_model_is_scored_one_document_at_a_time(tmp_path, documents_corpus, run_cli):
    model, tokenizer = make_checkpoint(tmp_path / "run", documents_corpus, batching="documents")
    held_out = DOCUMENTS[1::2]
    expected = documents_scored_alone(model, tokenizer, held_out)

    for batch, seq_len in (("32", "256"), ("3", "7"), ("1", "1000")):
        got = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--batch-size", batch, "--seq-len", seq_len)
        assert got["tokens"] == sum(len(tokenizer.encode(text)) + 1 for text in held_out)
        assert got["loss"] * got["tokens"] == pytest.approx(expected, rel=1e-5), (batch, seq_len)

    # The same ids read as one stream give another figure: the check above can tell the two apart.
    ids = np.array([EOT_ID, *(i for text in held_out for i in [*tokenizer.encode(text), EOT_ID])])
    assert evaluate_split(model, ids, batch_size=1).loss_sum != pytest.approx(expected, rel=1e-3)


def test_documents_scoring_counts_every_token_once_under_a_cap(tmp_path, documents_corpus):
    model, tokenizer = make_checkpoint(tmp_path / "run", documents_corpus, batching="documents")
    ids = np.array([EOT_ID, *(i for text in DOCUMENTS[:3] for i in [*tokenizer.encode(text), EOT_ID])])
    first = len(tokenizer.encode(DOCUMENTS[0])) + 1
    cap = first + 5  # the first document and five tokens of the second
    expected = documents_scored_alone(model, tokenizer, DOCUMENTS[:1]) + loss_one_token_at_a_time(
        model, [EOT_ID, *tokenizer.encode(DOCUMENTS[1])[:5]]
    )
    capped = evaluate_split(model, ids, batch_size=2, seq_len=4, max_tokens=cap, documents=True)
    assert capped.tokens == cap
    assert capped.loss_sum == pytest.approx(expected, rel=1e-5)
    whole = evaluate_split(model, ids, batch_size=2, seq_len=4, documents=True)
    assert whole.tokens == len(ids) - 1
    assert whole.loss_sum == pytest.approx(documents_scored_alone(model, tokenizer, DOCUMENTS[:3]), rel=1e-5)


def test_training_validates_a_documents_model_one_document_at_a_time(tmp_path, documents_corpus, run_cli):
    out = tmp_path / "run"
    args = (
        "--embedding-size",
        "8",
        "--hidden-size",
        "16",
        "--layers",
        "1",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--precision",
        "float32",
    )  # compared with a float32 reference
    trained = run_cli(
        "train", "--dataset", documents_corpus, "--batching", "documents", *args, "--max-steps", "3", "--output", out
    )
    assert trained.code == 0, trained.err
    (record,) = [json.loads(line) for line in (out / ckpt.METRICS).read_text().splitlines()]
    model, tokenizer, _ = ckpt.load_checkpoint(out)  # the weights of that one evaluation
    expected = documents_scored_alone(model, tokenizer, DOCUMENTS[1::2])
    assert record["valid_loss"] * record["valid_tokens"] == pytest.approx(expected, rel=1e-5)
    assert eval_json(run_cli, "--checkpoint", out)["loss"] == pytest.approx(record["valid_loss"], rel=1e-5)


# ---------------------------------------------------------------- which text, and per-character figures


def test_bits_per_char_of_char_and_bpe_models_cover_the_same_characters(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "char", folder_corpus, kind="char")
    make_checkpoint(tmp_path / "bpe", folder_corpus, kind="bpe", vocab_size=300)
    text = tmp_path / "other.txt"
    text.write_text(VALID_TEXT + "Is this the text to score? ¿Sí, señor — ünïcode too.\n", encoding="utf-8")

    char = eval_json(run_cli, "--checkpoint", tmp_path / "char", "--dataset", text, "--split", "train")
    bpe = eval_json(run_cli, "--checkpoint", tmp_path / "bpe", "--dataset", text, "--split", "train")

    assert char["chars"] == bpe["chars"] == len(text.read_text(encoding="utf-8")) + 1
    assert char["bytes"] == bpe["bytes"] == len(text.read_bytes()) + 1
    assert bpe["tokens"] < char["tokens"]
    for got in (char, bpe):
        assert got["bits_per_char"] == pytest.approx(got["loss"] * got["tokens"] / math.log(2) / got["chars"])


def test_default_text_is_the_validation_text_training_held_out(tmp_path, shakespeare_text, run_cli):
    path = tmp_path / "play.txt"
    path.write_text(shakespeare_text[:5000], encoding="utf-8")
    make_checkpoint(tmp_path / "run", path)
    corpus = load_corpus(str(path))  # a single .txt file: the last 10% of its characters are held out
    held_out = "".join(corpus.valid["text"])

    got = eval_json(run_cli, "--checkpoint", tmp_path / "run")
    assert got["chars"] == len(held_out) + 1
    assert "validation" in got["text"]

    whole = eval_json(run_cli, "--checkpoint", tmp_path / "run", "--split", "train")  # the checkpoint's corpus, whole
    assert whole["chars"] == 5000 + 1

    from_python = evaluate_checkpoint(tmp_path / "run", device="cpu")
    assert (from_python.tokens, from_python.chars) == (got["tokens"], got["chars"])
    assert from_python.perplexity == pytest.approx(got["perplexity"], rel=1e-9)


def test_table_shows_per_token_and_per_character_figures(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "checkpoints" / "run", folder_corpus)
    result = run_cli("eval", "--device", "cpu")  # the newest checkpoint under ./checkpoints
    assert result.code == 0, result.err
    table = " ".join(result.out.split())
    for words in ("per token", "per character", "perplexity", "bits", "compare across tokenizers", "perplexity do not"):
        assert words in table


# ---------------------------------------------------------------- bad inputs: one error line


def test_empty_split_is_an_error(tmp_path, run_cli):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": TRAIN_TEXT}) + "\n", encoding="utf-8")
    (folder / "test.jsonl").write_text(json.dumps({"text": ""}) + "\n", encoding="utf-8")
    (folder / "validation.jsonl").write_text(json.dumps({"text": ""}) + "\n", encoding="utf-8")
    make_checkpoint(tmp_path / "run", folder / "train.jsonl")

    assert_one_error_line(
        run_cli("eval", "--checkpoint", tmp_path / "run", "--dataset", folder, "--split", "test"), "empty"
    )
    assert_one_error_line(run_cli("eval", "--checkpoint", tmp_path / "run", "--dataset", folder), "empty")


def test_missing_split_is_an_error(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    result = run_cli("eval", "--checkpoint", tmp_path / "run", "--dataset", folder_corpus, "--split", "test")
    assert_one_error_line(result, "no split 'test'", "validation")


def test_missing_text_column_is_an_error(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "run", folder_corpus)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"body": line}) + "\n" for line in VALID_TEXT.splitlines()), encoding="utf-8")
    result = run_cli("eval", "--checkpoint", tmp_path / "run", "--dataset", rows, "--text-column", "text")
    assert_one_error_line(result, "no column 'text'", "body")


def test_tokenizer_that_does_not_match_the_weights_is_an_error(tmp_path, folder_corpus, run_cli):
    make_checkpoint(tmp_path / "char", folder_corpus, kind="char")
    _, bpe = make_checkpoint(tmp_path / "bpe", folder_corpus, kind="bpe", vocab_size=300)
    (tmp_path / "char" / ckpt.TOKENIZER).write_bytes((tmp_path / "bpe" / ckpt.TOKENIZER).read_bytes())
    assert_one_error_line(run_cli("eval", "--checkpoint", tmp_path / "char"), "tokenizer", str(bpe.vocab_size))


def test_missing_checkpoint_is_an_error(tmp_path, run_cli):
    assert_one_error_line(run_cli("eval"), "no checkpoint")
    assert_one_error_line(run_cli("eval", "--checkpoint", tmp_path / "nowhere"), "nowhere")
