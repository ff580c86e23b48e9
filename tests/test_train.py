import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import TINY_MODEL
from textlstm.checkpoint import load_checkpoint

REQUIRED_RECORD_KEYS = {"step", "train_loss", "valid_loss", "tokens_per_sec", "elapsed_sec"}


def tiny_config(corpus, batching="stream", **train):
    """A RunConfig for the Python API: the TINY_MODEL shape, `train` as TrainConfig fields."""
    from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    settings = dict(batch_size=4, seq_len=32, max_steps=12, eval_every=100, warmup_steps=2, seed=3)
    settings.update(train)
    return RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(dataset=str(corpus), batching=batching),
        train=TrainConfig(**settings),
    )


def metric_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def validation_losses(monkeypatch):
    """Make every evaluation during training report the next of `losses` (a list the test fills)."""
    import textlstm.train as train_module

    losses: list[float] = []

    def fake_evaluate_split(*args, **kwargs):
        loss = losses.pop(0)
        return SimpleNamespace(loss=loss, perplexity=math.exp(loss), bits_per_token=loss, bits_per_char=loss, tokens=100)

    monkeypatch.setattr(train_module, "evaluate_split", fake_evaluate_split)
    return losses


def final_loss(folder) -> float:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return records[-1]["train_loss"], records[-1]["valid_loss"]


def test_train_writes_a_complete_checkpoint(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "12", "--eval-every", "5", "--output", out)
    assert result.code == 0, result.err
    for name in ("config.json", "tokenizer.json", "model.safetensors", "trainer_state.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["version"] and config["model"]["hidden_size"] == 32 and config["data"]["tokenizer"] == "char"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [5, 10, 12]
    assert records[-1]["final"] and not records[0]["final"]
    for record in records:
        assert REQUIRED_RECORD_KEYS <= record.keys()
        assert record["tokens_per_sec"] > 0 and record["valid_loss"] > 0
    assert records[-1]["elapsed_sec"] >= records[0]["elapsed_sec"]
    model, tokenizer, _ = load_checkpoint(out)
    assert model.config.vocab_size == tokenizer.vocab_size


def test_training_lowers_the_validation_loss(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "60", "--eval-every", "20",
                     "--lr", "0.01", "--output", out)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["valid_loss"] < records[0]["valid_loss"] - 0.3


def test_resume_continues_exactly_with_a_constant_schedule(run_cli, small_corpus, tmp_path):
    common = ("--dataset", small_corpus, *TINY_MODEL, "--schedule", "constant", "--warmup-steps", "5",
              "--dropout", "0.2", "--recurrent-dropout", "0.2", "--eval-every", "100", "--seed", "7")
    assert run_cli("train", *common, "--max-steps", "40", "--output", tmp_path / "once").code == 0
    assert run_cli("train", *common, "--max-steps", "20", "--output", tmp_path / "twice").code == 0
    result = run_cli("train", "--resume", tmp_path / "twice", "--max-steps", "40")
    assert result.code == 0, result.err
    once, twice = final_loss(tmp_path / "once"), final_loss(tmp_path / "twice")
    assert twice[1] == pytest.approx(once[1], abs=1e-5)


def test_resume_after_an_interruption_matches_an_uninterrupted_run(small_corpus, tmp_path):
    """Default cosine schedule: a run stopped at step 20 (as Ctrl-C stops it) and resumed ends where
    an uninterrupted 40-step run ends."""
    from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from textlstm.train import Reporter, train

    def config():
        return RunConfig(
            model=ModelConfig(embedding_size=16, hidden_size=32, dropout=0.2, recurrent_dropout=0.2),
            data=DataConfig(dataset=str(small_corpus)),
            train=TrainConfig(batch_size=4, seq_len=32, max_steps=40, eval_every=100, warmup_steps=5, seed=3),
        )

    class StopAt20(Reporter):
        def __init__(self):
            self.trainer_stop = None

        def step(self, step, loss, tokens_per_sec, lr):
            if step == 20:
                os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does: the loop stops after this step

    whole = train(config(), output=tmp_path / "whole")
    stopped = train(config(), output=tmp_path / "stopped", reporter=StopAt20())
    assert stopped.interrupted and stopped.steps == 20
    resumed = train(resume=tmp_path / "stopped")
    assert resumed.steps == 40
    assert resumed.records[-1]["valid_loss"] == pytest.approx(whole.records[-1]["valid_loss"], abs=1e-5)


def test_ctrl_c_saves_a_checkpoint_and_says_where(small_corpus, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "textlstm", "train", "--dataset", str(small_corpus), *TINY_MODEL,
         "--max-steps", "100000", "--eval-every", "5", "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert (out / "metrics.jsonl").exists(), process.communicate()[1]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"checkpoint saved in {out}" in err and f"--resume {out}" in err
    state_steps = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert state_steps >= 5
    model, _, _ = load_checkpoint(out)
    assert model is not None


def test_second_run_on_the_same_corpus_reuses_the_tokenized_ids(run_cli, small_corpus, tmp_path, monkeypatch):
    import textlstm.data as data

    args = ("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2")
    assert run_cli(*args, "--output", tmp_path / "a").code == 0

    def fail(*_, **__):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(data, "_encode_to_file", fail)
    monkeypatch.setattr(data, "build_tokenizer", fail)
    result = run_cli(*args, "--output", tmp_path / "b")
    assert result.code == 0, result.err


def test_documents_batching_trains_on_jsonl(run_cli, tmp_path, shakespeare_text):
    path = tmp_path / "docs.jsonl"
    paragraphs = [p for p in shakespeare_text[:30_000].split("\n\n") if p.strip()]
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", path, *TINY_MODEL, "--batching", "documents", "--max-steps", "10",
                     "--eval-every", "5", "--output", out)
    assert result.code == 0, result.err
    assert json.loads((out / "config.json").read_text())["data"]["batching"] == "documents"


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_word_and_bpe_models_train(run_cli, small_corpus, tmp_path, kind):
    out = tmp_path / "run"
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--tokenizer", kind, "--vocab-size", "500",
                     "--max-steps", "3", "--output", out)
    assert result.code == 0, result.err
    _, tokenizer, config = load_checkpoint(out)
    assert tokenizer.vocab_size <= 500 and config.data.tokenizer == kind


def test_builtin_corpus_trains_offline_by_default(run_cli, tmp_path):
    result = run_cli("train", *TINY_MODEL, "--max-steps", "2", "--eval-tokens", "2000")
    assert result.code == 0, result.err
    runs = list((tmp_path / "checkpoints").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-pydoc-char")
    assert "built-in" in result.err


def _bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "body.jsonl").write_text('{"body": "some text"}\n' * 50)
    return {
        "missing path": (["--dataset", tmp_path / "nope.txt"], "no such file or folder"),
        "empty corpus": (["--dataset", tmp_path / "empty.txt"], "empty"),
        "unknown hub id offline": (["--dataset", "someone/no-such-dataset"], "could not load 'someone/no-such-dataset'"),
        "missing text column": (["--dataset", tmp_path / "body.jsonl", "--text-column", "text"], "no column 'text'"),
        "hidden size 0": (["--hidden-size", "0"], "--hidden-size"),
        "negative layers": (["--layers", "-2"], "--layers"),
        "dropout 1.5": (["--dropout", "1.5"], "--dropout"),
        "recurrent dropout 1": (["--recurrent-dropout", "1"], "--recurrent-dropout"),
        "resume a folder without a run": (["--resume", tmp_path / "nowhere"], "cannot resume"),
        "unknown option": (["--hidden", "3"], "No such option"),
    }


BAD_INPUT_CASES = [
    "missing path", "empty corpus", "unknown hub id offline", "missing text column", "hidden size 0",
    "negative layers", "dropout 1.5", "recurrent dropout 1", "resume a folder without a run", "unknown option",
]


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_one_clear_line(run_cli, tmp_path, case):
    args, expected = _bad_inputs(tmp_path)[case]
    result = run_cli("train", *args)
    assert result.code != 0
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert expected in lines[0]
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_invalid_utf8_is_replaced_with_a_warning(run_cli, tmp_path, shakespeare_text):
    path = tmp_path / "bytes.txt"
    path.write_bytes(shakespeare_text[:5000].encode() + b"\xff\xfe odd bytes\n" + shakespeare_text[5000:10000].encode())
    result = run_cli("train", "--dataset", path, *TINY_MODEL, "--max-steps", "2", "--output", tmp_path / "run")
    assert result.code == 0, result.err
    assert "warning: " in result.err and "not valid UTF-8" in result.err and "Traceback" not in result.err


def test_an_output_folder_holding_another_run_is_left_untouched(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "3", "--output", out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--hidden-size", "16", "--max-steps", "3", "--output", out)
    assert result.code != 0
    assert result.err.count("\n") == 1 and "--resume" in result.err and "--overwrite" in result.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "3", "--output", out, "--overwrite")
    assert again.code == 0, again.err


def test_resume_refuses_to_change_the_model(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "3", "--output", out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("train", "--resume", out, "--hidden-size", "64", "--max-steps", "6")
    assert result.code == 2 and "--hidden-size cannot change when resuming" in result.err
    assert "32" in result.err and "64" in result.err  # the run's value and the new one
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_accepts_the_command_the_run_was_started_with(run_cli, small_corpus, tmp_path):
    """What a user types: the same command again, with --resume added (and a new --max-steps)."""
    out = tmp_path / "run"
    command = ("train", "--dataset", small_corpus, *TINY_MODEL, "--tokenizer", "char", "--lr", "0.01",
               "--eval-every", "3", "--output", out)
    assert run_cli(*command, "--max-steps", "3").code == 0
    result = run_cli(*command, "--max-steps", "6", "--resume", out)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]


def test_patience_stops_after_that_many_evaluations_without_improvement(small_corpus, tmp_path, validation_losses):
    from textlstm.checkpoint import load_trainer_state
    from textlstm.train import train

    validation_losses.extend([3.0, 2.0, 2.5, 2.1, 2.2, 1.0, 1.0])
    result = train(tiny_config(small_corpus, max_steps=30, eval_every=2, patience=3), output=tmp_path / "run")
    assert result.stopped_early and result.steps == 10 and result.best_valid_loss == 2.0
    records = metric_records(tmp_path / "run")
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10]  # one evaluation per step, none repeated
    assert [r["final"] for r in records] == [False] * 4 + [True]
    assert load_trainer_state(tmp_path / "run" / "trainer_state.pt")["evals_since_best"] == 3


def test_resuming_a_finished_run_evaluates_nothing_again(small_corpus, tmp_path):
    from textlstm.train import train

    config = tiny_config(small_corpus, max_steps=6, eval_every=3)
    train(config, output=tmp_path / "run")
    result = train(resume=tmp_path / "run")
    assert result.steps == 6 and not result.interrupted
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [3, 6]


def test_resuming_a_run_that_stopped_early_does_not_train_on(small_corpus, tmp_path, validation_losses):
    from textlstm.train import train

    validation_losses.extend([3.0, 3.5])
    first = train(tiny_config(small_corpus, max_steps=30, eval_every=2, patience=1), output=tmp_path / "run")
    assert first.stopped_early and first.steps == 4
    again = train(resume=tmp_path / "run")
    assert again.stopped_early and again.steps == 4
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [2, 4]
    validation_losses.extend([2.0])  # a larger --patience continues it
    more = train(resume=tmp_path / "run", train_overrides={"patience": 2, "max_steps": 6})
    assert more.steps == 6 and not more.stopped_early
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [2, 4, 6]
