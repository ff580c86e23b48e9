"""CPU threads for torch: how many to use, and how idle ones wait.

Both numbers were measured by `benchmarks/bench_threads.py` (figures in benchmarks/RESULTS.md):
- A small LSTM's matrices are too small to share between cores: a second thread adds a wait at every
  parallel region and slows the step down. A large one gains from it. `default_threads` picks one
  thread below WORK_FOR_TWO_THREADS multiply-adds per time step, else torch's own default.
- OpenMP threads that run out of work spin for a while before sleeping. When another process holds
  a core, a spinning thread takes turns with it and every region waits: training slowed down many
  times over. OMP_WAIT_POLICY=PASSIVE makes them sleep instead. OpenMP reads it once, when torch
  loads, so the command line sets it before anything imports torch (`prefer_passive_waiting`).
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"
# Multiply-adds of one LSTM time step for the whole batch, above which two threads beat one.
WORK_FOR_TWO_THREADS = 60_000_000


def prefer_passive_waiting() -> None:
    """Let idle OpenMP threads sleep, unless the user chose a wait policy. Call before importing torch."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def lstm_work_per_step(embedding: int, hidden: int, layers: int, batch: int) -> int:
    """Multiply-adds of the LSTM's input and recurrent matrices for one time step of the batch."""
    inputs = embedding + (layers - 1) * hidden
    return 4 * hidden * (inputs + layers * hidden) * batch


def default_threads(embedding: int, hidden: int, layers: int, batch: int) -> int:
    """One thread for small models; torch's default (one per core) when the work is large enough."""
    import torch

    if lstm_work_per_step(embedding, hidden, layers, batch) < WORK_FOR_TWO_THREADS:
        return 1
    return torch.get_num_threads()


def use_threads(requested: int | None, embedding: int, hidden: int, layers: int, batch: int) -> int:
    """Set torch's thread count: `requested`; else OMP_NUM_THREADS when set (the user's or the
    launcher's choice, which torch already follows); else the default for this shape. Returns it."""
    import torch

    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = requested or default_threads(embedding, hidden, layers, batch)
    torch.set_num_threads(threads)
    return threads
