"""--streaming: a corpus read as a stream, tokenized on the fly, with nothing cached and exact resume."""

import dataclasses
import json
import os

import pytest
import torch

from conftest import TINY_MODEL
from textlstm.config import DataConfig
from textlstm.data import streaming
from textlstm.data.prepare import prepare
from textlstm.tokens import EOT_ID

NO_DROPOUT = ("--dropout", "0", "--recurrent-dropout", "0")


def write_jsonl(path, texts):
    path.write_text(
        "".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(texts)), encoding="utf-8"
    )
    return path


@pytest.fixture
def docs(tmp_path, shakespeare_text):
    """15 documents of 300 characters: a pass over the training rows takes about 30 steps of TINY_MODEL."""
    return write_jsonl(tmp_path / "docs.jsonl", [shakespeare_text[i * 300 : (i + 1) * 300] for i in range(15)])


def records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def files_under(folder):
    return [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]


def test_streamed_training_writes_a_checkpoint_and_caches_nothing(run_cli, docs, tmp_path, offline_and_isolated):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        docs,
        "--streaming",
        *TINY_MODEL,
        "--max-steps",
        "12",
        "--eval-every",
        "6",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    for name in ("config.json", "tokenizer.json", "model.safetensors", "trainer_state.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["data"]["streaming"] is True
    assert [r["step"] for r in records(out)] == [6, 12]
    assert not (tmp_path / "textlstm-cache" / "ids").exists()
    written = [f for f in files_under(offline_and_isolated) if not f.endswith(".lock")]
    assert written == [], written  # no Arrow files: the corpus was never converted


@pytest.mark.parametrize("kind", ["jsonl", "txt"])
def test_resume_continues_from_the_same_stream_position(run_cli, docs, tmp_path, shakespeare_text, monkeypatch, kind):
    if kind == "txt":  # lines of a running text, read in blocks small enough to be refilled during the run
        monkeypatch.setattr(streaming, "RUNNING_TEXT_CHARS", 200)
        corpus = tmp_path / "running.txt"
        corpus.write_text(shakespeare_text[:5000], encoding="utf-8")
    else:
        corpus = docs
    common = (
        "--dataset",
        corpus,
        "--streaming",
        *TINY_MODEL,
        *NO_DROPOUT,
        "--schedule",
        "constant",
        "--warmup-steps",
        "5",
        "--eval-every",
        "100",
        "--seed",
        "7",
    )
    assert run_cli("train", *common, "--max-steps", "40", "--output", tmp_path / "once").code == 0
    assert run_cli("train", *common, "--max-steps", "20", "--output", tmp_path / "twice").code == 0
    result = run_cli("train", "--resume", tmp_path / "twice", "--max-steps", "40")
    assert result.code == 0, result.err
    once, twice = records(tmp_path / "once")[-1], records(tmp_path / "twice")[-1]
    assert twice["step"] == once["step"] == 40
    assert twice["valid_loss"] == pytest.approx(once["valid_loss"], abs=1e-5)
    if kind == "jsonl":
        assert once["epoch"] == twice["epoch"] == 1  # the stream ran out once and started over, resumed or not


def test_resume_without_the_stream_position_would_differ(run_cli, docs, tmp_path):
    """The check above can fail: restarting the stream from its start on resume changes the result."""
    common = (
        "--dataset",
        docs,
        "--streaming",
        *TINY_MODEL,
        *NO_DROPOUT,
        "--schedule",
        "constant",
        "--warmup-steps",
        "5",
        "--eval-every",
        "100",
        "--seed",
        "7",
    )
    assert run_cli("train", *common, "--max-steps", "40", "--output", tmp_path / "once").code == 0
    assert run_cli("train", *common, "--max-steps", "20", "--output", tmp_path / "twice").code == 0
    state_path = tmp_path / "twice" / "trainer_state.pt"
    state = torch.load(state_path, weights_only=True)
    state["stream"] = {**state["stream"], "dataset": _stream_of(docs).open().state_dict()}
    torch.save(state, state_path)
    assert run_cli("train", "--resume", tmp_path / "twice", "--max-steps", "40").code == 0
    assert records(tmp_path / "twice")[-1]["valid_loss"] != pytest.approx(
        records(tmp_path / "once")[-1]["valid_loss"], abs=1e-5
    )


def _stream_of(path):
    return prepare(DataConfig(dataset=str(path), streaming=True, tokenizer="char")).stream


@pytest.fixture
def running_text(tmp_path, shakespeare_text):
    path = tmp_path / "running.txt"
    path.write_text(shakespeare_text[:5000], encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["docs", "running_text"])
def test_streamed_local_files_hold_out_the_tail_a_stored_corpus_holds_out(request, monkeypatch, kind):
    """The same validation text, so the same characters and bits per character as a stored run's."""
    monkeypatch.setattr(streaming, "COUNT_BATCH_ROWS", 4)  # the boundary falls in a later batch than the first
    corpus = request.getfixturevalue(kind)
    lines = []
    stored = prepare(DataConfig(dataset=str(corpus), tokenizer="char"))
    streamed = prepare(DataConfig(dataset=str(corpus), tokenizer="char", streaming=True), report=lines.append)
    assert streamed.tokenizer.to_str() == stored.tokenizer.to_str()
    assert streamed.splits["valid"].info == stored.splits["valid"].info
    assert streamed.splits["valid"].ids.tolist() == stored.splits["valid"].ids.tolist()
    training_text = [text for text in streaming._texts(streamed.stream.open(), "text", streamed.corpus) if text]
    assert "".join(training_text) == "".join(stored.corpus.train["text"])
    assert "validation: the last 10% of the characters" in "\n".join(lines)


def test_a_hub_stream_holds_out_its_head_and_says_so(docs, monkeypatch):
    """A stream whose length cannot be known (one from the Hub) keeps its first rows for validation."""
    local = streaming.open_streamed
    monkeypatch.setattr(streaming, "open_streamed", lambda *args: dataclasses.replace(local(*args), local=False))
    lines = []
    prepared = prepare(DataConfig(dataset=str(docs), streaming=True, tokenizer="char"), report=lines.append)
    texts = [json.loads(line)["text"] for line in docs.read_text().splitlines()]
    held_out = prepared.stream.skip_rows
    assert held_out == 2  # a tenth of this small corpus's characters, in whole rows
    assert "validation: the first 2 rows of the stream" in "\n".join(lines)
    tokenizer = prepared.tokenizer
    expected_valid = [EOT_ID]
    for text in texts[:held_out]:
        expected_valid += tokenizer.encode(text) + [EOT_ID]
    assert prepared.splits["valid"].ids.tolist() == expected_valid
    batcher = streaming.StreamingBatcher(prepared.stream, batch_size=2, seq_len=8)
    inputs, _ = batcher.batch()
    assert inputs[0].tolist() == [EOT_ID] + tokenizer.encode(texts[held_out])[:7]
    assert inputs[1].tolist() == [EOT_ID] + tokenizer.encode(texts[held_out + 1])[:7]


def test_the_tokenizer_learns_only_from_its_sample(tmp_path, monkeypatch):
    """The sample is the first training rows; a character seen only after it, or in validation, gets no token."""
    texts = ["abc" * 100] * 15 + ["xyz" * 100] * 3 + ["v" * 300] * 2  # the last tenth: the two "v" rows
    corpus = write_jsonl(tmp_path / "sample.jsonl", texts)
    monkeypatch.setattr(streaming, "TOKENIZER_SAMPLE_CHARS", 15 * 300)
    vocab = prepare(DataConfig(dataset=str(corpus), streaming=True, tokenizer="char")).tokenizer.hf.get_vocab()
    assert {"a", "b", "c"} <= vocab.keys()
    assert "v" not in vocab  # validation text
    assert "x" not in vocab  # after the sample
    monkeypatch.setattr(streaming, "TOKENIZER_SAMPLE_CHARS", 15 * 300 + 1)
    assert "x" in prepare(DataConfig(dataset=str(corpus), streaming=True, tokenizer="char")).tokenizer.hf.get_vocab()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "missing/corpus.jsonl"], "no such file or folder: missing/corpus.jsonl"),
        ([], "--streaming reads a corpus given with --dataset"),
        (["--dataset", "{docs}", "--epochs", "1"], "--epochs needs a corpus of known length"),
        (["--dataset", "{docs}", "--batching", "documents"], "--streaming trains with --batching stream only"),
        (["--dataset", "{bad}"], "could not read"),
        (
            ["--dataset", "nobody/no-such-dataset"],
            "could not load 'nobody/no-such-dataset' from the Hugging Face Hub (offline",
        ),
        (["--dataset", "tinyshakespeare"], "'tinyshakespeare' is a corpus card; cards are not streamed"),
        (["--dataset", "{saved}"], "is a saved dataset, memory-mapped already: train on it without --streaming"),
    ],
)
def test_bad_input_is_one_error_line(run_cli, docs, tmp_path, args, message):
    import datasets

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n' * 40 + "{not json\n", encoding="utf-8")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["a story"]}).save_to_disk(str(saved))
    args = [a.format(docs=docs, bad=bad, saved=saved) for a in args]
    result = run_cli("train", "--streaming", *args, *TINY_MODEL, "--max-steps", "30", "--output", tmp_path / "run")
    assert result.code != 0
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and result.err.strip().endswith(errors[0]), result.err
    assert "Traceback" not in result.err + result.out
    assert "Failed to load JSON" not in result.err  # datasets' own log lines are kept quiet


def test_eval_of_a_streamed_run_scores_the_same_held_out_text(run_cli, docs, tmp_path):
    from textlstm.evaluation.scoring import evaluate_checkpoint

    out = tmp_path / "run"
    assert (
        run_cli("train", "--dataset", docs, "--streaming", *TINY_MODEL, "--max-steps", "6", "--output", out).code == 0
    )
    result = evaluate_checkpoint(out)
    assert result.loss == pytest.approx(records(out)[-1]["valid_loss"], abs=1e-4)
    assert result.chars == prepare(DataConfig(dataset=str(docs), tokenizer="char")).splits["valid"].info.chars


def test_a_validation_split_of_its_own_is_read_up_to_the_bound(tmp_path, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", ["abc" * 100] * 5)
    write_jsonl(folder / "validation.jsonl", ["xyz" * 100] * 5)
    monkeypatch.setattr(streaming, "VALID_CHARS", 450)
    prepared = prepare(DataConfig(dataset=str(folder), streaming=True, tokenizer="char"))
    assert prepared.stream.skip_rows == 0  # no training rows held out
    assert prepared.splits["valid"].info.chars == 450 + 2  # one row and a half, each ended by an end of text


def test_a_stream_position_is_refused_by_another_process(docs):
    """The trainer saves process 0's position only: process 1 of a resumed torchrun must not read from it."""
    stream = _stream_of(docs)
    saved = streaming.StreamingBatcher(stream, batch_size=2, seq_len=8)
    saved.batch()
    state = saved.state_dict()
    with pytest.raises(ValueError, match="process 0's of 1"):
        streaming.StreamingBatcher(stream, batch_size=2, seq_len=8, rank=1, world_size=2).load_state_dict(state)


def test_processes_share_the_training_rows_of_several_files_and_no_validation_row(tmp_path):
    """Rows held out are counted from the split's start, not in each file: two files, two processes."""
    (tmp_path / "parts").mkdir()
    texts = [f"row {i} " * 20 for i in range(20)]
    write_jsonl(tmp_path / "parts" / "a.jsonl", texts[:10])
    write_jsonl(tmp_path / "parts" / "b.jsonl", texts[10:])
    stream = prepare(DataConfig(dataset=str(tmp_path / "parts" / "*.jsonl"), streaming=True, tokenizer="char")).stream
    training = list(streaming._texts(stream.open(), "text", stream.source))
    assert len(training) == 19 and training[-1] != texts[18]  # the last tenth starts inside row 18
    shares = [list(streaming._texts(stream.open(rank, 2), "text", stream.source)) for rank in (0, 1)]
    assert shares == [training[0::2], training[1::2]]
