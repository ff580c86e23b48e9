"""How many threads torch gets, and the OpenMP wait policy the command line sets."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from conftest import REPO
from textlstm.hardware import threads


def test_small_models_get_one_thread_and_large_ones_torchs_default(monkeypatch):
    monkeypatch.setattr(threads, "torch_default_threads", lambda: 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.default_threads(embedding=64, hidden=128, layers=2, batch=32) == 1
    assert threads.default_threads(embedding=650, hidden=650, layers=2, batch=32) == 2
    # bfloat16's cheaper products move the line: a 2 x 256 model at batch 32 keeps one thread
    assert threads.default_threads(embedding=64, hidden=256, layers=2, batch=32, precision="float32") == 2
    assert threads.default_threads(embedding=64, hidden=256, layers=2, batch=32, precision="bfloat16") == 1


def test_threads_asked_for_win_then_omp_num_threads_then_the_default(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.use_threads(1, 650, 650, 2, 32) == 1 and chosen == [1]
    assert threads.use_threads(None, 64, 128, 2, 32) == 2 and chosen == [1]  # OMP_NUM_THREADS: left as torch read it
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.use_threads(None, 64, 128, 2, 32) == 1 and chosen == [1, 1]


def test_the_command_line_lets_idle_openmp_threads_sleep_unless_told_otherwise():
    probe = (
        "import os, sys; from textlstm.cli.main import main\n"
        "try: main(['--version'])\nexcept SystemExit: pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == "PASSIVE"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | {"OMP_WAIT_POLICY": "ACTIVE"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == "ACTIVE"


def test_threads_must_be_positive(run_cli):
    result = run_cli("train", "--threads", "0")
    assert result.code == 2 and "--threads" in result.err and "Traceback" not in result.err
