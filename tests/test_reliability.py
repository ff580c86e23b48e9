"""Nothing lost, nothing run: crashes mid-save, hostile checkpoints, bad numbers, unwritable folders."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TINY_MODEL
from textlstm.errors import TextlstmError
from textlstm.runs.checkpoint import load_checkpoint

DIE_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    import textlstm.runs.checkpoint as checkpoint

    die_at = int(sys.argv[1])
    saves = {"n": 0}
    real_torch_save, real_save_model = torch.save, checkpoint.save_model

    def half_write_then_die(path):
        saves["n"] += 1
        if saves["n"] == die_at:
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def torch_save(obj, f, *args, **kwargs):
        half_write_then_die(f)
        return real_torch_save(obj, f, *args, **kwargs)

    def save_model(model, filename, *args, **kwargs):
        half_write_then_die(filename)
        return real_save_model(model, filename, *args, **kwargs)

    torch.save, checkpoint.save_model = torch_save, save_model
    from textlstm.cli.main import main
    main(sys.argv[2:])
    """
)


def train_args(corpus, out, steps=30):
    return [
        "train",
        "--dataset",
        str(corpus),
        *TINY_MODEL,
        "--max-steps",
        str(steps),
        "--eval-every",
        "5",
        "--save-every",
        "2",
        "--output",
        str(out),
    ]


@pytest.mark.parametrize("die_at_save", [3, 4, 7])
def test_killed_in_the_middle_of_a_save_resumes(run_cli, small_corpus, tmp_path, die_at_save):
    """SIGKILL while a weights file or the trainer state is half written: the previous checkpoint
    stays loadable and --resume finishes the run."""
    out = tmp_path / "run"
    script = tmp_path / "die.py"
    script.write_text(DIE_DURING_SAVE)
    process = subprocess.run(
        [sys.executable, str(script), str(die_at_save), *train_args(small_corpus, out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert any(p.name.endswith(".tmp") for p in out.iterdir()), "the kill should leave a half-written temp file"
    model, _, _ = load_checkpoint(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    result = run_cli("train", "--resume", out)
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 30 and records[-1]["final"]


def test_killed_at_random_moments_of_training_resumes(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    first_run = train_args(small_corpus, out, steps=100000)
    for delay in (0.5, 1.3):
        args = ["train", "--resume", str(out)] if (out / "trainer_state.pt").exists() else first_run
        process = subprocess.Popen(
            [sys.executable, "-m", "textlstm", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 120
        while not (out / "trainer_state.pt").exists() and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert (out / "trainer_state.pt").exists(), "no trainer state within 120 s: " + process.stderr.read()
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        model, _, config = load_checkpoint(out)
        assert config.model.hidden_size == 32 and all(torch.isfinite(p).all() for p in model.parameters())
    target = (
        int(torch.load(out / "trainer_state.pt", weights_only=True)["step"]) + 10
    )  # however far the kills let it get
    result = run_cli("train", "--resume", out, "--max-steps", str(target))
    assert result.code == 0, result.err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == target and records[-1]["final"]


# Everything that decides the weights is fixed (no "auto" that depends on the step budget, a schedule that
# does not read --max-steps), so a run stopped anywhere and resumed can be compared with an uninterrupted one.
EXACT_RUN = (
    *TINY_MODEL,
    "--schedule",
    "constant",
    "--warmup-steps",
    "3",
    "--dropout",
    "0.1",
    "--recurrent-dropout",
    "0.1",
    "--weight-decay",
    "0.01",
    "--eval-every",
    "5",
    "--seed",
    "4",
    "--precision",
    "float32",
)


def test_sigterm_saves_and_stops_like_ctrl_c_and_the_run_resumes_exactly(run_cli, small_corpus, tmp_path):
    """SIGTERM (what Slurm, Kubernetes and `timeout` send): the step under way ends, the run is saved,
    the exit code is 143; resumed, it ends where an uninterrupted run of as many steps ends."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "textlstm",
            "train",
            "--dataset",
            str(small_corpus),
            *EXACT_RUN,
            "--max-steps",
            "100000",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert (out / "metrics.jsonl").exists(), process.communicate()[1]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    stopped = int(torch.load(out / "trainer_state.pt", weights_only=True)["step"])
    assert f"interrupted by SIGTERM at step {stopped}: checkpoint saved in {out}" in err
    assert f"continue with: textlstm train --resume {out}" in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == stopped >= 5

    total = stopped + 3
    assert run_cli("train", "--resume", out, "--max-steps", total).code == 0
    straight = run_cli(
        "train", "--dataset", small_corpus, *EXACT_RUN, "--max-steps", total, "--output", tmp_path / "straight"
    )
    assert straight.code == 0, straight.err
    resumed_state = torch.load(out / "trainer_state.pt", weights_only=True)
    straight_state = torch.load(tmp_path / "straight" / "trainer_state.pt", weights_only=True)
    assert resumed_state["step"] == straight_state["step"] == total
    for name, weights in straight_state["model"].items():
        torch.testing.assert_close(resumed_state["model"][name], weights, rtol=0, atol=1e-6)


def test_a_second_sigterm_lets_the_save_finish_and_a_ctrl_c_then_interrupts_at_once():
    from textlstm.training.stop_signals import StopFlag

    def not_caught(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached the handler outside the stop flag")

    outside = signal.signal(signal.SIGTERM, not_caught)
    try:
        with StopFlag() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested and stop.signal == signal.SIGTERM
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is not_caught
    finally:
        signal.signal(signal.SIGTERM, outside)


class Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.getcwd()}/pwned",))


def test_a_malicious_trainer_state_runs_nothing(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(small_corpus, out, steps=4)).code == 0
    with open(out / "trainer_state.pt", "wb") as f:
        pickle.dump({"model": Exploit()}, f)
    result = run_cli("train", "--resume", out)
    assert result.code == 1
    assert result.err.startswith("error: refusing to load") and result.err.count("\n") == 1
    assert not (tmp_path / "pwned").exists()


def test_a_torch_saved_malicious_state_runs_nothing(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(small_corpus, out, steps=4)).code == 0
    torch.save({"model": Exploit()}, out / "trainer_state.pt")
    result = run_cli("train", "--resume", out)
    assert result.code == 1 and "refusing to load" in result.err
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def trained(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli(*train_args(small_corpus, out, steps=4)).code == 0
    return out


def test_checkpoint_of_another_format_is_refused(trained):
    config = json.loads((trained / "config.json").read_text())
    config["format"] = 99
    (trained / "config.json").write_text(json.dumps(config))
    with pytest.raises(TextlstmError, match="format 99 is not supported"):
        load_checkpoint(trained)


def test_weights_that_do_not_match_the_config_are_refused(trained):
    config = json.loads((trained / "config.json").read_text())
    config["model"]["hidden_size"] = 48
    (trained / "config.json").write_text(json.dumps(config))
    with pytest.raises(TextlstmError, match="do not match config.json"):
        load_checkpoint(trained)


def test_truncated_weights_are_refused(trained):
    weights = trained / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(TextlstmError, match="cannot read weights"):
        load_checkpoint(trained)


def test_non_finite_losses_are_skipped_then_stop_training(small_corpus, tmp_path, monkeypatch):
    from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.training.trainer import train

    real_loss = LSTMLanguageModel.loss
    calls = {"n": 0}

    def loss_that_goes_bad(self, *args, **kwargs):
        total, count, state = real_loss(self, *args, **kwargs)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3 or calls["n"] >= 12:
                total = total * float("nan")
        return total, count, state

    monkeypatch.setattr(LSTMLanguageModel, "loss", loss_that_goes_bad)
    config = RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32),
        data=DataConfig(dataset=str(small_corpus)),
        train=TrainConfig(batch_size=4, seq_len=32, max_steps=50, eval_every=5, ar=0.0, tar=0.0),
    )  # model.loss: AR/TAR off
    with pytest.raises(TextlstmError, match="non-finite loss"):
        train(config, output=tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # Skipped steps count (their batches are passed over): the fifth bad one in a row, step 16, stops the run.
    assert calls["n"] == 16 and [r["step"] for r in records] == [5, 10, 15]
    model, _, _ = load_checkpoint(tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_an_unwritable_output_is_reported_before_training(run_cli, small_corpus, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    result = run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--output", tmp_path / "a-file" / "run")
    assert result.code == 1
    assert result.err.startswith("error: cannot write checkpoints to") and result.err.count("\n") == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=0, max_size=400))
def test_any_bytes_in_a_corpus_file_load_or_fail_clearly(tmp_path, raw):
    from textlstm.data.corpora import load_corpus

    path = tmp_path / "fuzz.txt"
    path.write_bytes(raw)
    try:
        corpus = load_corpus(str(path))
    except TextlstmError as error:
        assert "\n" not in str(error)
        return
    text = "".join(corpus.train["text"]) + "".join(corpus.valid["text"])
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "\ufffd" in text
        return
    assert text == decoded.replace("\r\n", "\n").replace("\r", "\n")  # .txt is read with universal newlines


PEAK_MEMORY_OF_GENERATION = textwrap.dedent(
    """
    import resource, sys
    import textlstm
    lm = textlstm.load(sys.argv[1])
    prompt = ("All the world's a stage, and all the men and women merely players. " * 20000)[: int(sys.argv[2])]
    text = "".join(lm.stream(prompt, max_tokens=int(sys.argv[3]), seed=1))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    """
)


def test_a_1_mb_prompt_and_a_long_generation_run_in_bounded_memory(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    args = ("--embedding-size", "16", "--hidden-size", "128", "--layers", "1", "--batch-size", "2", "--seq-len", "16")
    assert run_cli("train", "--dataset", small_corpus, *args, "--max-steps", "1", "--output", out).code == 0
    script = tmp_path / "peak.py"
    script.write_text(PEAK_MEMORY_OF_GENERATION)

    def peak_mb(prompt_chars: int, tokens: int) -> int:
        done = subprocess.run(
            [sys.executable, str(script), str(out), str(prompt_chars), str(tokens)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip().splitlines()[-1])

    baseline = peak_mb(10, 10)
    # Reading 1M prompt tokens in one pass would hold ~1M x 128 x 4 gates x 4 bytes = 2 GB of activations.
    long_prompt = peak_mb(1_000_000, 10)
    assert long_prompt - baseline < 400
    assert peak_mb(10, 20_000) - baseline < 50
