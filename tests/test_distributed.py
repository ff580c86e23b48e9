"""Several processes training one model (torchrun + DistributedDataParallel, gloo on the CPU).

Each test starts real processes through `textlstm train --nproc 2` or torchrun, with tiny models and
one thread per process. The slow ones start several runs, kill processes or restart them.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL

TINY = ("--embedding-size", "16", "--hidden-size", "32", "--layers", "2")


def textlstm(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textlstm", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if line.strip()]


@pytest.fixture
def documents_corpus(tmp_path, shakespeare_text) -> Path:
    path = tmp_path / "docs.jsonl"
    paragraphs = [p for p in shakespeare_text[:40_000].split("\n\n") if p.strip()]
    path.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    return path


# 36,002 training tokens in 4 rows of 9,000: 30 steps of 301, the last one only 271 wide.
STREAM = ("--batching", "stream", "--seq-len", "301", "--epochs", "1")
DOCUMENTS = ("--batching", "documents", "--seq-len", "64", "--max-steps", "30")


@pytest.mark.parametrize("batching", ["stream", "documents"])
def test_two_processes_train_the_model_one_process_trains(run_cli, small_corpus, documents_corpus, tmp_path, batching):
    """Same global batch, seed, no dropout or AR/TAR, constant schedule: 2 processes end where 1 ends. Each must
    read its own rows and the gradients must be averaged by token (documents give the two processes
    different numbers of tokens); the stream's last batch is narrower than the others."""
    corpus, batching_args = (small_corpus, STREAM) if batching == "stream" else (documents_corpus, DOCUMENTS)
    common = (
        "train",
        "--dataset",
        corpus,
        *TINY,
        *batching_args,
        "--batch-size",
        "4",
        "--dropout",
        "0",
        "--recurrent-dropout",
        "0",
        "--ar",
        "0",
        "--tar",
        "0",
        "--schedule",
        "constant",
        "--warmup-steps",
        "3",
        "--eval-every",
        "10",
        "--lr",
        "0.01",
        "--seed",
        "5",
        "--precision",
        "float32",
    )  # float32: the comparison is to 1e-4
    alone = run_cli(*common, "--output", tmp_path / "alone")
    assert alone.code == 0, alone.err
    two = textlstm(*common, "--nproc", "2", "--output", tmp_path / "two")
    assert two.returncode == 0, two.stderr

    one_records, two_records = records(tmp_path / "alone"), records(tmp_path / "two")
    assert [r["step"] for r in two_records] == [r["step"] for r in one_records] == [10, 20, 30]
    assert one_records[-1]["valid_loss"] < one_records[0]["valid_loss"] - 0.1  # it learned something
    for one, two_ in zip(one_records, two_records):
        assert two_["valid_loss"] == pytest.approx(one["valid_loss"], abs=1e-4)
        assert two_["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)
    assert {r["world_size"] for r in two_records} == {2} and {r["world_size"] for r in one_records} == {1}
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    assert two.stderr.count("done after 30 steps") == 1 and "Traceback" not in two.stderr  # process 0 speaks for all

    from textlstm.evaluation.scoring import evaluate_checkpoint  # one process, the saved (best) weights

    best = min(r["valid_loss"] for r in two_records)
    assert evaluate_checkpoint(tmp_path / "two").loss == pytest.approx(best, abs=1e-4)


@pytest.mark.slow
def test_resume_under_two_processes_is_exact(small_corpus, tmp_path):
    """With dropout, so each process's random stream must come back where it was. Slow: three
    2-process runs."""
    common = (
        "train",
        "--nproc",
        "2",
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
        "--precision",
        "float32",
    )
    straight = textlstm(*common, "--max-steps", "40", "--output", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    first = textlstm(*common, "--max-steps", "20", "--output", tmp_path / "halves")
    assert first.returncode == 0, first.stderr
    state = torch.load(tmp_path / "halves" / "trainer_state.pt", weights_only=True)
    assert len(state["rng_per_process"]) == 2 and not torch.equal(*state["rng_per_process"])
    assert state["lstm_state"][0].shape[1] == 4  # the rows of both processes
    second = textlstm("train", "--nproc", "2", "--resume", tmp_path / "halves", "--max-steps", "40")
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stderr
    assert records(tmp_path / "halves")[-1]["step"] == 40
    assert records(tmp_path / "halves")[-1]["valid_loss"] == pytest.approx(
        records(tmp_path / "straight")[-1]["valid_loss"], abs=1e-5
    )


# ----------------------------------------------------------------------------- bad input


def test_nproc_zero_is_refused(run_cli, small_corpus):
    result = run_cli("train", "--dataset", small_corpus, "--nproc", "0")
    assert result.code == 2
    assert len(error_lines(result.err)) == 1 and "--nproc" in result.err


def test_more_processes_than_rows_is_one_error_and_keeps_the_run(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    made = run_cli("train", "--dataset", small_corpus, *TINY, "--batch-size", "1", "--max-steps", "2", "--output", out)
    assert made.code == 0, made.err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("train", "--nproc", "2", "--resume", out, "--max-steps", "4")
    assert result.code == 1
    assert error_lines(result.err) == [
        "error: --batch-size 1 (rows per step, all processes together) does not split evenly over 2 processes: "
        "give a multiple of 2, or use fewer processes"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_rendezvous_that_cannot_be_reached_is_one_error(small_corpus, tmp_path):
    """Process 1 of 2, told to meet the others at a port where nobody listens."""
    env = {
        "RANK": "1",
        "LOCAL_RANK": "1",
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
    }
    result = textlstm(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--dist-timeout",
        "0.02",
        "--output",
        tmp_path / "run",
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: process 1 of 2 could not join the others at 127.0.0.1:"), (
        result.stderr
    )
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- faults (slow)


def _worker_pid(mark: str, rank: int, deadline: float) -> int:
    """The pid of the training process of rank `rank` among the processes started with TEXTLSTM_TEST_MARK=mark."""
    while time.time() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                env = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
            except (OSError, ValueError):
                continue
            if env.get("TEXTLSTM_TEST_MARK") == mark and env.get("RANK") == str(rank):
                return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no process of rank {rank} found")


def _wait_for(path: Path, process: subprocess.Popen, deadline: float) -> None:
    while not path.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert path.exists(), process.communicate()[1]


def _start(args, mark: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TEXTLSTM_TEST_MARK": mark, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_killed_process_is_restarted_by_torchrun_and_the_run_resumes(small_corpus, tmp_path):
    """torchrun --max-restarts 1, no --output: after a SIGKILL the restarted processes find their run
    folder under checkpoints/ and go on from its last save to the end."""
    mark = uuid.uuid4().hex
    process = _start(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "-m",
            "textlstm",
            "train",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            "--max-steps",
            "60",
            "--eval-every",
            "10",
            "--save-every",
            "5",
        ],
        mark,
    )
    deadline = time.time() + 240
    while (
        time.time() < deadline and process.poll() is None and not list(tmp_path.glob("checkpoints/*/trainer_state.pt"))
    ):
        time.sleep(0.2)
    os.kill(_worker_pid(mark, 1, deadline), signal.SIGKILL)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    runs = list((tmp_path / "checkpoints").iterdir())
    assert len(runs) == 1, runs
    assert "resuming" in err
    assert records(runs[0])[-1]["step"] == 60 and records(runs[0])[-1]["final"]


@pytest.mark.slow
def test_a_killed_process_stops_the_whole_run(small_corpus, tmp_path):
    mark = uuid.uuid4().hex
    out = tmp_path / "run"
    process = _start(
        [
            "-m",
            "textlstm",
            "train",
            "--nproc",
            "2",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            "--max-steps",
            "100000",
            "--eval-every",
            "5",
            "--output",
            out,
        ],
        mark,
    )
    deadline = time.time() + 240
    # The checkpoint the resume below needs: metrics.jsonl is written before it, and a kill in between
    # leaves a run with nothing to resume.
    _wait_for(out / "trainer_state.pt", process, deadline)
    os.kill(_worker_pid(mark, 1, deadline), signal.SIGKILL)
    killed_at = time.time()
    _, err = process.communicate(timeout=120)
    assert time.time() - killed_at < 60
    assert process.returncode == 1
    assert "error: process 1 of 2 was killed by SIGKILL; the others were stopped" in error_lines(err), err
    assert "Traceback" not in err
    result = textlstm("train", "--resume", out, "--max-steps", str(records(out)[-1]["step"] + 2))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_ctrl_c_on_the_launcher_stops_every_process_with_a_checkpoint(small_corpus, tmp_path):
    mark = uuid.uuid4().hex
    out = tmp_path / "run"
    process = _start(
        [
            "-m",
            "textlstm",
            "train",
            "--nproc",
            "2",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            "--max-steps",
            "100000",
            "--eval-every",
            "5",
            "--output",
            out,
        ],
        mark,
    )
    deadline = time.time() + 240
    _wait_for(out / "metrics.jsonl", process, deadline)
    workers = [_worker_pid(mark, rank, deadline) for rank in (0, 1)]
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the launcher and its processes
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert f"checkpoint saved in {out}" in err and err.count("checkpoint saved") == 1
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    last = records(out)[-1]
    # The stop is evaluated and saved: a final record, unless Ctrl-C came right after a periodic
    # evaluation (every 5 steps), which is then the last record of the run (no second one at that step).
    assert state["step"] == last["step"] and (last["final"] or last["step"] % 5 == 0)
    result = textlstm("train", "--nproc", "2", "--resume", out, "--max-steps", str(state["step"] + 2))
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_every_process_after_the_same_step_with_one_save(small_corpus, tmp_path):
    """What `timeout`, Slurm and Kubernetes do: SIGTERM to the launcher alone. torchrun's agent passes it
    on to each process; they agree to stop after the same step and save once, and the launcher exits 143."""
    mark = uuid.uuid4().hex
    out = tmp_path / "run"
    process = _start(
        [
            "-m",
            "textlstm",
            "train",
            "--nproc",
            "2",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            "--max-steps",
            "100000",
            "--eval-every",
            "5",
            "--output",
            out,
        ],
        mark,
    )
    deadline = time.time() + 240
    _wait_for(out / "metrics.jsonl", process, deadline)
    workers = [_worker_pid(mark, rank, deadline) for rank in (0, 1)]
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err and not [line for line in error_lines(err) if line.startswith("error:")], err
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    assert err.count("checkpoint saved") == 1
    assert f"interrupted by SIGTERM at step {state['step']}: checkpoint saved in {out}" in err
    # The last save gathered both processes' random and LSTM states: both were at that step.
    assert len(state["rng_per_process"]) == 2 and state["lstm_state"][0].shape[1] == 4
    steps = [r["step"] for r in records(out)]
    assert steps[-1] == state["step"] and steps.count(state["step"]) == 1
    result = textlstm("train", "--nproc", "2", "--resume", out, "--max-steps", str(state["step"] + 2))
    assert result.returncode == 0, result.stderr
    assert records(out)[-1]["step"] == state["step"] + 2


def test_under_two_processes_process_0_plans_the_time_budget_for_both(small_corpus, tmp_path):
    """The shape is left to the planner: if each process planned on its own (and measured another
    speed), their models could differ and DistributedDataParallel would fail; process 0's plan is the one saved."""
    out = tmp_path / "planned"
    result = textlstm(
        "train",
        "--nproc",
        "2",
        "--dataset",
        small_corpus,
        "--batch-size",
        "4",
        "--seq-len",
        "32",
        "--max-minutes",
        "0.15",
        "--output",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("measured in ") == 1 and "Traceback" not in result.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["world_size"] == 2 and saved["plan"]["chosen"][1] == saved["model"]["hidden_size"]
