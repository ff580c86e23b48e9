"""CPU threads for torch: how many to use, and how idle ones wait.

Both were measured by `benchmarks/speed/threads.py` (benchmarks/experiments/e2026_11_25_two_threads):
- A small LSTM's matrices are too small to share between cores: a second thread adds a wait at every
  parallel region and slows the step down. A large one gains from it. `default_threads` picks one
  thread below WORK_FOR_TWO_THREADS multiply-adds per time step, else one per core this process may
  use (torch's own default, capped by its CPU affinity). In bfloat16 each matrix product is cheaper,
  so the line lies higher.
- OpenMP threads that run out of work spin for a while before sleeping. When another process holds
  a core, a spinning thread takes turns with it and every region waits: training slowed down many
  times over. OMP_WAIT_POLICY=PASSIVE makes them sleep instead. OpenMP reads it once, when torch
  loads, so the command line sets it before anything imports torch (`prefer_passive_waiting`).
"""

from __future__ import annotations

import os

WAIT_POLICY = "OMP_WAIT_POLICY"
# Multiply-adds of one LSTM time step for the whole batch above which two threads beat one, by
# precision: each line lies between the measured training steps (2 cores) where one thread was faster
# and those where two were (benchmarks/experiments/e2026_11_25_two_threads).
WORK_FOR_TWO_THREADS = {"float32": 20_000_000, "bfloat16": 50_000_000}


def prefer_passive_waiting() -> None:
    """Let idle OpenMP threads sleep, unless the user chose a wait policy. Call before importing torch."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def lstm_work_per_step(embedding: int, hidden: int, layers: int, batch: int) -> int:
    """Multiply-adds of the LSTM's input and recurrent matrices for one time step of the batch."""
    inputs = embedding + (layers - 1) * hidden
    return 4 * hidden * (inputs + layers * hidden) * batch


_torch_default: list[int] = []  # torch's thread count before anything here set it


def default_threads(embedding: int, hidden: int, layers: int, batch: int, precision: str = "float32") -> int:
    """One thread for small models; one per core this process may use when the work is large enough."""
    if lstm_work_per_step(embedding, hidden, layers, batch) < WORK_FOR_TWO_THREADS[precision]:
        return 1
    return max(1, min(torch_default_threads(), usable_cores()))


def torch_default_threads() -> int:
    """torch's own thread count (one per physical core, or OMP_NUM_THREADS), as it was before use_threads set one."""
    import torch

    if not _torch_default:
        _torch_default.append(torch.get_num_threads())
    return _torch_default[0]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's cpuset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_threads(
    requested: int | None, embedding: int, hidden: int, layers: int, batch: int, precision: str = "float32"
) -> int:
    """Set torch's thread count: `requested`; else OMP_NUM_THREADS when set (the user's or the
    launcher's choice, which torch already follows); else the default for this shape. Returns it."""
    import torch

    torch_default_threads()  # recorded before the first set_num_threads
    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = requested or default_threads(embedding, hidden, layers, batch, precision)
    torch.set_num_threads(threads)
    return threads
