import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_MODEL, MessageLog
from textlstm.runs.checkpoint import load_checkpoint

REQUIRED_RECORD_KEYS = {"step", "train_loss", "valid_loss", "tokens_per_sec", "elapsed_sec"}


def tiny_config(corpus, batching="stream", **train):
    """A RunConfig for the Python API: the TINY_MODEL shape, `train` as TrainConfig fields."""
    from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    # AR/TAR off: with them on, training computes its loss through model.regularized_loss, not the
    # model.loss these tests watch.
    # Every size and regularization given: nothing is left for the planner to time.
    settings = dict(
        batch_size=4,
        seq_len=32,
        max_steps=12,
        eval_every=100,
        warmup_steps=2,
        seed=3,
        ar=0.0,
        tar=0.0,
        weight_decay=0.01,
    )
    settings.update(train)
    return RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32, layers=2, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(dataset=str(corpus), batching=batching),
        train=TrainConfig(**settings),
    )


def metric_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def validation_losses(monkeypatch):
    """Make every evaluation during training report the next of `losses` (a list the test fills)."""
    import textlstm.training.trainer as train_module

    losses: list[float] = []

    def fake_evaluate_split(*args, **kwargs):
        loss = losses.pop(0)
        return SimpleNamespace(
            loss=loss, perplexity=math.exp(loss), bits_per_token=loss, bits_per_char=loss, tokens=100
        )

    monkeypatch.setattr(train_module, "evaluate_split", fake_evaluate_split)
    return losses


def final_loss(folder) -> float:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return records[-1]["train_loss"], records[-1]["valid_loss"]


def test_train_writes_a_complete_checkpoint(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "12", "--eval-every", "5", "--output", out
    )
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
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--max-steps",
        "60",
        "--eval-every",
        "20",
        "--lr",
        "0.01",
        "--ar",
        "0",
        "--tar",
        "0",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["valid_loss"] < records[0]["valid_loss"] - 0.3


def test_resume_continues_exactly_with_a_constant_schedule(run_cli, small_corpus, tmp_path):
    common = (
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--schedule",
        "constant",
        "--warmup-steps",
        "5",
        "--dropout",
        "0.2",
        "--recurrent-dropout",
        "0.2",
        "--eval-every",
        "100",
        "--seed",
        "7",
    )
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
    from textlstm.training.trainer import Reporter, train

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


def test_ctrl_c_saves_a_checkpoint_and_says_where(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "textlstm",
            "train",
            "--dataset",
            str(small_corpus),
            *TINY_MODEL,
            "--max-steps",
            "100000",
            "--eval-every",
            "5",
            "--output",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
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
    last = metric_records(out)[-1]
    assert last["step"] >= 5
    resumed = run_cli("train", "--resume", out, "--max-steps", last["step"] + 2)
    assert resumed.code == 0, resumed.err
    assert metric_records(out)[-1]["step"] == last["step"] + 2


def test_second_run_on_the_same_corpus_reuses_the_tokenized_ids(run_cli, small_corpus, tmp_path, monkeypatch):
    import textlstm.data.token_ids as token_ids
    import textlstm.data.tokenizer as tokenizer

    args = ("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2")
    assert run_cli(*args, "--output", tmp_path / "a").code == 0

    def fail(*_, **__):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(token_ids, "_encode_to_file", fail)
    monkeypatch.setattr(tokenizer, "build_tokenizer", fail)
    result = run_cli(*args, "--output", tmp_path / "b")
    assert result.code == 0, result.err


@pytest.fixture
def speeches(tmp_path, shakespeare_text):
    """A jsonl corpus of about 40 short documents (the speeches of the first 4 KB of tiny Shakespeare)."""
    path = tmp_path / "data" / "speeches.jsonl"
    path.parent.mkdir(exist_ok=True)
    paragraphs = [p for p in shakespeare_text[:4_000].split("\n\n") if p.strip()]
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    return path


def test_documents_batching_trains_on_each_document_alone(run_cli, speeches, tmp_path, monkeypatch):
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.tokens import EOT_ID, PAD_ID

    batches = []
    real_loss = LSTMLanguageModel.loss

    def spy(self, ids, targets, state=None, lengths=None):
        if self.training:
            batches.append((ids.clone(), targets.clone(), state, lengths))
        return real_loss(self, ids, targets, state, lengths)

    monkeypatch.setattr(LSTMLanguageModel, "loss", spy)
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        speeches,
        *TINY_MODEL,
        "--batching",
        "documents",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--ar",
        "0",
        "--tar",
        "0",
        "--output",
        out,
    )  # AR/TAR off: training calls model.loss
    assert result.code == 0, result.err
    assert json.loads((out / "config.json").read_text())["data"]["batching"] == "documents"
    assert [r["step"] for r in metric_records(out)] == [3, 6]
    assert len(batches) == 6
    for ids, targets, state, lengths in batches:
        assert state is None and lengths is not None  # each window from a zero state, padding masked
        for row, length in enumerate(lengths.tolist()):
            assert (ids[row, 1:length] != EOT_ID).all()  # no window reads across a document's end
            assert (targets[row, length:] == PAD_ID).all() and (targets[row, :length] != PAD_ID).all()
    assert sum(int((ids[:, 0] == EOT_ID).sum()) for ids, *_ in batches) >= 3  # windows that start a document


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_word_and_bpe_models_train(run_cli, small_corpus, tmp_path, kind):
    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--tokenizer",
        kind,
        "--vocab-size",
        "500",
        "--max-steps",
        "3",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    _, tokenizer, config = load_checkpoint(out)
    assert tokenizer.vocab_size <= 500 and config.data.tokenizer == kind


def test_builtin_corpus_trains_offline_by_default(run_cli, tmp_path):
    result = run_cli("train", *TINY_MODEL, "--max-steps", "2", "--eval-tokens", "2000")
    assert result.code == 0, result.err
    runs = list((tmp_path / "checkpoints").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-pydoc-auto")
    assert "built-in" in result.err


def _bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "body.jsonl").write_text('{"body": "some text"}\n' * 50)
    return {
        "missing path": (["--dataset", tmp_path / "nope.txt"], "no such file or folder"),
        "empty corpus": (["--dataset", tmp_path / "empty.txt"], "empty"),
        "unknown hub id offline": (
            ["--dataset", "someone/no-such-dataset"],
            "could not load 'someone/no-such-dataset'",
        ),
        "missing text column": (["--dataset", tmp_path / "body.jsonl", "--text-column", "text"], "no column 'text'"),
        "hidden size 0": (["--hidden-size", "0"], "--hidden-size"),
        "negative layers": (["--layers", "-2"], "--layers"),
        "dropout 1.5": (["--dropout", "1.5"], "--dropout"),
        "recurrent dropout 1": (["--recurrent-dropout", "1"], "--recurrent-dropout"),
        "resume a folder without a run": (["--resume", tmp_path / "nowhere"], "cannot resume"),
        "unknown option": (["--hidden", "3"], "No such option"),
    }


BAD_INPUT_CASES = [
    "missing path",
    "empty corpus",
    "unknown hub id offline",
    "missing text column",
    "hidden size 0",
    "negative layers",
    "dropout 1.5",
    "recurrent dropout 1",
    "resume a folder without a run",
    "unknown option",
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
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--hidden-size", "16", "--max-steps", "3", "--output", out
    )
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
    command = (
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--tokenizer",
        "char",
        "--lr",
        "0.01",
        "--eval-every",
        "3",
        "--output",
        out,
    )
    assert run_cli(*command, "--max-steps", "3").code == 0
    result = run_cli(*command, "--max-steps", "6", "--resume", out)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]


def test_resume_accepts_the_vocab_size_asked_for_when_the_vocabulary_came_out_smaller(run_cli, small_corpus, tmp_path):
    """The small corpus has far fewer than 50,000 distinct words: the model's vocabulary is smaller
    than --vocab-size, and the same command typed again with --resume still means the same run."""
    out = tmp_path / "run"
    command = (
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--tokenizer",
        "word",
        "--vocab-size",
        "50000",
        "--eval-every",
        "3",
        "--output",
        out,
    )
    assert run_cli(*command, "--max-steps", "3").code == 0
    assert json.loads((out / "config.json").read_text())["model"]["vocab_size"] < 50_000
    result = run_cli(*command, "--max-steps", "6", "--resume", out)
    assert result.code == 0, result.err
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [3, 6]


def test_patience_stops_after_that_many_evaluations_without_improvement(small_corpus, tmp_path, validation_losses):
    from textlstm.runs.checkpoint import load_trainer_state
    from textlstm.training.trainer import train

    # 30 steps after 2 of warmup: the cosine is past its middle from step 16. The misses before it do
    # not count (the noise of a high learning rate); the three from there on stop the run.
    validation_losses.extend([3.0, 2.0, 2.5, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 1.0, 1.0])
    result = train(tiny_config(small_corpus, max_steps=30, eval_every=2, patience=3), output=tmp_path / "run")
    assert result.stopped_early and result.steps == 20 and result.best_valid_loss == 2.0
    records = metric_records(tmp_path / "run")
    assert [r["step"] for r in records] == list(range(2, 21, 2))  # one evaluation per step, none repeated
    assert [r["final"] for r in records] == [False] * 9 + [True]
    assert load_trainer_state(tmp_path / "run" / "trainer_state.pt")["evals_since_best"] == 3


def test_auto_patience_waits_for_a_fifth_of_the_run_when_evaluations_are_many(
    small_corpus, tmp_path, validation_losses
):
    """60 steps, an evaluation every 2: a fifth of the run holds 6 to 7 of its 30 evaluations, so
    three misses past the cosine's middle (step 31) do not stop it; nor do seven before the decay is
    80% through (step 48.4): the tenth, at step 50, does."""
    from textlstm.training.trainer import train

    validation_losses.extend([3.0 - 0.1 * i for i in range(15)] + [2.0] * 15)
    result = train(tiny_config(small_corpus, max_steps=60, eval_every=2, patience=None), output=tmp_path / "run")
    assert result.stopped_early and result.steps == 50 and result.best_valid_loss == pytest.approx(1.6)
    validation_losses.clear()
    validation_losses.extend([3.0 - 0.1 * i for i in range(15)] + [2.0] * 15)  # the same run with --patience 3
    result = train(tiny_config(small_corpus, max_steps=60, eval_every=2, patience=3), output=tmp_path / "given")
    assert result.stopped_early and result.steps == 36


def test_auto_patience_lets_a_run_stall_before_the_late_decay_and_improve_after(
    small_corpus, tmp_path, validation_losses
):
    """The loss stalls from step 22 to 48 (nine misses past the cosine's middle, a third of the run) and
    falls again at step 50 as the rate comes down: the run goes on to its end (it stopped at step 44)."""
    from textlstm.training.trainer import train

    validation_losses.extend([3.0 - 0.1 * i for i in range(10)] + [2.5] * 14 + [1.0 - 0.01 * i for i in range(6)])
    result = train(tiny_config(small_corpus, max_steps=60, eval_every=2, patience=None), output=tmp_path / "run")
    assert not result.stopped_early and result.steps == 60 and result.best_valid_loss == pytest.approx(0.95)


def test_with_a_constant_rate_every_miss_counts_toward_patience(small_corpus, tmp_path, validation_losses):
    from textlstm.training.trainer import train

    validation_losses.extend([3.0, 3.1, 3.2, 1.0])
    result = train(
        tiny_config(small_corpus, max_steps=30, eval_every=2, patience=2, schedule="constant"), output=tmp_path / "run"
    )
    assert result.stopped_early and result.steps == 6


def test_resuming_a_finished_run_evaluates_nothing_again(small_corpus, tmp_path):
    from textlstm.training.trainer import train

    config = tiny_config(small_corpus, max_steps=6, eval_every=3)
    train(config, output=tmp_path / "run")
    result = train(resume=tmp_path / "run")
    assert result.steps == 6 and not result.interrupted
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [3, 6]


def test_resuming_a_run_that_stopped_early_does_not_train_on(small_corpus, tmp_path, validation_losses):
    from textlstm.training.trainer import train

    validation_losses.extend([3.0, 3.5])
    first = train(
        tiny_config(small_corpus, max_steps=30, eval_every=2, patience=1, schedule="constant"), output=tmp_path / "run"
    )
    assert first.stopped_early and first.steps == 4
    again = train(resume=tmp_path / "run")
    assert again.stopped_early and again.steps == 4
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [2, 4]
    validation_losses.extend([2.0])  # a larger --patience continues it
    more = train(resume=tmp_path / "run", train_overrides={"patience": 2, "max_steps": 6})
    assert more.steps == 6 and not more.stopped_early
    assert [r["step"] for r in metric_records(tmp_path / "run")] == [2, 4, 6]


def test_max_minutes_stops_by_the_clock_and_drives_the_decay(small_corpus, tmp_path, monkeypatch):
    """A fake clock: every training step takes 10 s, so a 1-minute budget ends after step 6."""
    import textlstm.training.trainer as train_module
    from textlstm.runs.checkpoint import load_config
    from textlstm.training import tokenizer_choice
    from textlstm.training.schedule import learning_rate

    clock = {"now": 0.0}
    monkeypatch.setattr(train_module, "now", lambda: clock["now"])
    monkeypatch.setattr(tokenizer_choice, "now", lambda: clock["now"])  # choosing the tokenizer takes no time here
    rates = {}

    class TenSecondSteps(train_module.Reporter):
        def step(self, step, loss, tokens_per_sec, lr):
            rates[step] = lr
            clock["now"] = 10.0 * step

    config = tiny_config(small_corpus, max_steps=1000, max_minutes=1.0, warmup_steps=0, save_every_minutes=0)
    result = train_module.train(config, output=tmp_path / "run", reporter=TenSecondSteps())
    assert result.steps == 6 and not result.interrupted
    assert [(r["step"], r["final"]) for r in metric_records(tmp_path / "run")] == [(6, True)]
    planned = load_config(tmp_path / "run").train  # the learning rate resolved
    for step, lr in rates.items():  # step k starts (k - 1) * 10 s into the run
        assert lr == pytest.approx(learning_rate(step - 1, 1000, planned, elapsed_sec=10.0 * (step - 1)))
    assert rates[4] < 0.7 * planned.lr  # half the budget spent: halfway down the cosine, by the clock


def test_epochs_set_the_number_of_steps(run_cli, tmp_path, shakespeare_text):
    corpus = tmp_path / "short.txt"
    corpus.write_text(shakespeare_text[:2_000])
    out = tmp_path / "run"
    result = run_cli(
        "train", "--dataset", corpus, *TINY_MODEL, "--epochs", "2", "--eval-every", "1000", "--output", out
    )
    assert result.code == 0, result.err
    assert json.loads((out / "config.json").read_text())["train"]["max_steps"] is None
    last = metric_records(out)[-1]
    assert last["epoch"] == 2.0 and 20 <= last["step"] <= 40  # ~1,800 chars / (4 rows x 32) per epoch


def test_the_lstm_state_is_carried_from_batch_to_batch(small_corpus, tmp_path, monkeypatch):
    """Stream batching is truncated BPTT: each batch starts from the state the one before ended in
    (detached), and the first batch of an epoch from zero."""
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.training.trainer import train

    calls = []
    real_loss = LSTMLanguageModel.loss

    def spy(self, ids, targets, state=None, lengths=None):
        total, count, new_state = real_loss(self, ids, targets, state, lengths)
        if self.training:
            calls.append((state, tuple(t.detach().clone() for t in new_state)))
        return total, count, new_state

    monkeypatch.setattr(LSTMLanguageModel, "loss", spy)
    train(tiny_config(small_corpus, max_steps=4), output=tmp_path / "run")
    assert len(calls) == 4 and calls[0][0] is None
    for (_, ended), (started, _) in zip(calls, calls[1:]):
        assert started is not None and not started[0].requires_grad
        torch.testing.assert_close(started[0], ended[0].float())  # float32 also after a bfloat16 step
        torch.testing.assert_close(started[1], ended[1].float())


def test_a_step_whose_loss_is_not_finite_is_skipped_and_the_next_batch_follows(small_corpus, tmp_path, monkeypatch):
    """Step 3's loss is NaN: it changes neither the weights, the optimizer nor the carried LSTM state,
    and step 4 reads the next batch, from the state step 2 ended in."""
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.runs.checkpoint import load_trainer_state
    from textlstm.training.trainer import train

    steps = []
    real_loss = LSTMLanguageModel.loss

    def loss_nan_at_step_3(self, ids, targets, state=None, lengths=None):
        total, count, new_state = real_loss(self, ids, targets, state, lengths)
        if self.training:
            steps.append(
                SimpleNamespace(
                    ids=ids.clone(),
                    started=state,
                    ended=tuple(t.detach().clone() for t in new_state),
                    weights=[p.detach().clone() for p in self.parameters()],
                )
            )
            if len(steps) == 3:
                total = total * float("nan")
        return total, count, new_state

    monkeypatch.setattr(LSTMLanguageModel, "loss", loss_nan_at_step_3)
    result = train(tiny_config(small_corpus, max_steps=5), output=tmp_path / "run", reporter=(messages := MessageLog()))
    assert result.steps == 5 and len(steps) == 5
    assert any(text.startswith("step 3: loss is nan; step skipped") for text in messages.said)
    assert not torch.equal(steps[3].ids, steps[2].ids)  # on to the next batch, not the same one again
    for started, ended in zip(steps[3].started, steps[1].ended):  # the state step 2 ended in
        torch.testing.assert_close(started, ended.float())
    for before, after in zip(steps[2].weights, steps[3].weights):
        assert torch.equal(before, after)
    optimizer = load_trainer_state(tmp_path / "run" / "trainer_state.pt")["optimizer"]
    assert {int(state["step"]) for state in optimizer["state"].values()} == {4}  # four updates in five steps


@pytest.mark.parametrize("batching", ["stream", "documents"])
def test_resume_across_an_epoch_boundary_matches_an_uninterrupted_run(speeches, tmp_path, batching):
    """Stopped by Ctrl-C in the first epoch, resumed into the third: the same weights as one run."""
    from textlstm.runs.checkpoint import load_trainer_state
    from textlstm.training.trainer import Reporter, train

    def config():
        settings = tiny_config(speeches, batching, max_steps=1, eval_every=1000, batch_size=8)
        return dataclasses.replace(
            settings, model=dataclasses.replace(settings.model, dropout=0.2, recurrent_dropout=0.2)
        )

    probe = train(config(), output=tmp_path / "probe")
    per_epoch = round(1 / probe.records[-1]["epoch"])
    assert 3 <= per_epoch <= 15

    def run_config():
        settings = config()
        return dataclasses.replace(settings, train=dataclasses.replace(settings.train, max_steps=2 * per_epoch + 2))

    class StopInFirstEpoch(Reporter):
        def step(self, step, loss, tokens_per_sec, lr):
            if step == per_epoch // 2:
                os.kill(os.getpid(), signal.SIGINT)

    whole = train(run_config(), output=tmp_path / "whole")
    stopped = train(run_config(), output=tmp_path / "stopped", reporter=StopInFirstEpoch())
    assert stopped.interrupted and stopped.steps == per_epoch // 2
    resumed = train(resume=tmp_path / "stopped")
    assert resumed.steps == whole.steps == 2 * per_epoch + 2
    once = load_trainer_state(tmp_path / "whole" / "trainer_state.pt")["model"]
    twice = load_trainer_state(tmp_path / "stopped" / "trainer_state.pt")["model"]
    for name in once:
        torch.testing.assert_close(twice[name], once[name], rtol=1e-5, atol=1e-6, msg=name)
