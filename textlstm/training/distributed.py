"""Several processes training one model: the process group, DistributedDataParallel, and the few
things the processes must agree on.

`torchrun` (or `textlstm train --nproc N`, see local_processes.py) starts the processes and gives each one
RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. `session()` joins them into one process
group: gloo on the CPU, NCCL (with gloo beside it for CPU tensors) when training on CUDA. Without
those variables, or with WORLD_SIZE=1, this is process 0 of 1 and every function here does nothing
but run the work it is given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from textlstm.errors import ReportedElsewhere, TextlstmError
from textlstm.runs.checkpoint import CONFIG

# How long a process waits in any exchange with the others (setup included: process 0 may be
# tokenizing a large corpus while the others wait) before the run stops with an error. A process
# that dies is noticed sooner: torchrun stops the others at once, and gloo errors on a closed socket.
DEFAULT_TIMEOUT_MINUTES = 30.0


def launched() -> bool:
    """Whether this process was started as one of several (torchrun's environment variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_rank() -> int:
    """This process's rank as torchrun gave it, before the process group exists."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def under_torchrun() -> bool:
    """Whether torchrun started this process (one or several): it forwards signals and restarts it."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def launch_id() -> str | None:
    """torchrun's id of this launch: the same for every process and across its restarts."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def restart_count() -> int:
    """How many times torchrun has restarted the processes of this launch (`--max-restarts`)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def local_device(device: torch.device) -> torch.device:
    """The GPU of this process (cuda:LOCAL_RANK) when training on CUDA under several processes."""
    if device.type == "cuda" and launched() and device.index is None:
        return torch.device("cuda", local_rank())
    return device


@contextmanager
def session(timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> Iterator[None]:
    """Join the other processes for the duration of the block (nothing to do for a single process).

    With a GPU for this process, NCCL carries CUDA tensors and gloo CPU ones; else gloo carries all.
    """
    if active() or not launched():
        yield
        return
    backend = "gloo"
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())
        backend = "cpu:gloo,cuda:nccl"
    address = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    timeout = timedelta(minutes=timeout_minutes)
    try:
        dist.init_process_group(
            backend,
            store=_store(timeout),
            rank=launched_rank(),
            world_size=int(os.environ["WORLD_SIZE"]),
            timeout=timeout,
        )
    except (RuntimeError, ValueError, KeyError) as error:  # DistNetworkError and DistStoreError are RuntimeErrors
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TextlstmError(
            f"process {os.environ.get('RANK', '?')} of {os.environ.get('WORLD_SIZE', '?')} could not join "
            f"the others at {address} within {timeout_minutes:g} minutes: {detail}"
        ) from None
    try:
        yield
    except RuntimeError as error:
        if not (isinstance(error, dist.DistError) or "gloo" in str(error)):
            raise
        raise TextlstmError(
            f"process {launched_rank()} lost contact with the others ({_gist(error)}): one of them stopped "
            "or cannot be reached; what was saved is intact"
        ) from None
    else:
        _leave_together()
    finally:
        dist.destroy_process_group()


def _leave_together() -> None:
    """Wait until every process is done before tearing down. One that exits while another is still
    in a collective (or still holds its gloo connections) can make the other abort in gloo's threads
    ("terminate called without an active exception")."""
    try:
        dist.barrier()
    except RuntimeError:
        pass  # the run is over and saved; a peer that already left changes nothing


def _gist(error: Exception) -> str:
    """'Connection reset by peer' out of gloo's
    '[.../pair.cc:537] Read error [host]:port: Connection reset by peer. This is...'"""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]
    return text.rsplit(": ", 1)[-1] if ": " in text else text


def _store(timeout: timedelta) -> dist.Store:
    """The key-value store the processes meet in, at MASTER_ADDR:MASTER_PORT.

    Under torchrun its agent holds the store, and keeps it when it restarts the processes: the keys
    the first processes wrote (gloo's addresses among them) are still there, and new processes that
    read them connect to the dead ones' ports (PyTorch 2.13). So each start uses its own key prefix.
    """
    agent_holds_it = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        int(os.environ["WORLD_SIZE"]),
        is_master=not agent_holds_it and launched_rank() == 0,
        timeout=timeout,
    )
    return dist.PrefixStore(f"textlstm/start-{restart_count()}", store)


# ----------------------------------------------------------------------------- agreeing


def from_main(value: Any) -> Any:
    """Process 0's `value`, on every process (any picklable object)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every process's `value`, in rank order, on every process."""
    if not active():
        return [value]
    values = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over all processes (the tensor itself when alone)."""
    if active():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def in_turn(work: Callable[[], None]) -> None:
    """Run `work` on process 0, then on all the others (so process 0 fills the caches they read).

    A TextlstmError on any process stops every process: process 0 raises it (naming the process
    it came from), the others raise ReportedElsewhere, so the error is told once.
    """
    if not active():
        work()
        return
    _stop_if_any_failed(_attempt(work) if is_main() else None)
    _stop_if_any_failed(None if is_main() else _attempt(work))


def agree_on_errors(work: Callable[[], Any]) -> Any:
    """Run `work` on every process; a TextlstmError on any of them stops all, told once (see in_turn)."""
    if not active():
        return work()
    result: list[Any] = []
    _stop_if_any_failed(_attempt(lambda: result.append(work())))
    return result[0]


def _attempt(work: Callable[[], None]) -> str | None:
    try:
        work()
    except TextlstmError as error:
        return str(error)
    return None


def _stop_if_any_failed(error: str | None) -> None:
    failed = [(process, message) for process, message in enumerate(gather(error)) if message is not None]
    if not failed:
        return
    process, message = failed[0]
    if process != 0:
        message = f"process {process}: {message}"
    raise TextlstmError(message) if is_main() else ReportedElsewhere(message)


def check_batch_splits(batch_size: int | None, processes: int | None = None) -> None:
    """--batch-size counts the rows of all processes together: it must split evenly between them (None,
    auto: the plan chooses a multiple of the processes)."""
    processes = processes or world_size()
    if batch_size is not None and batch_size % processes:
        raise TextlstmError(
            f"--batch-size {batch_size} (rows per step, all processes together) does not split "
            f"evenly over {processes} processes: give a multiple of {processes}, or use fewer processes"
        )


# ----------------------------------------------------------------------------- the model


class _LossOf(nn.Module):
    """DistributedDataParallel hooks a module's forward; the model's training loss is its
    `regularized_loss` method, so this module's forward is that method."""

    def __init__(self, model: nn.Module, ar: float, tar: float):
        super().__init__()
        self.model, self.ar, self.tar = model, ar, tar

    def forward(self, *args):
        return self.model.regularized_loss(*args, self.ar, self.tar)


def loss_function(
    model: nn.Module, device: torch.device, some_parameters_unused: bool = False, ar: float = 0.0, tar: float = 0.0
) -> Callable:
    """`model.regularized_loss` with `ar` and `tar`, called as (ids, targets, state, lengths); with
    gradients averaged over the processes when there are several.

    some_parameters_unused: a step may leave some weights without a gradient (the adaptive
    softmax computes only the clusters its targets fall in); DDP must then look for them.
    """
    if not active():
        return lambda *args: model.regularized_loss(*args, ar, tar)
    return DistributedDataParallel(
        _LossOf(model, ar, tar),
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=some_parameters_unused,
    )


def seed_this_process(seed: int) -> None:
    """Give each process its own random stream for its dropout masks, derived from `seed`.

    Process 0 keeps the stream it has (so one process trains exactly as it always has); call this
    after the model's weights are drawn, which must be the same everywhere.
    """
    if rank() > 0:
        torch.manual_seed((seed * 1_000_003 + rank()) % 2**63)


# ----------------------------------------------------------------------------- restarts


def run_of_this_launch(output: str | Path | None, checkpoints_root: str | Path) -> Path | None:
    """After torchrun has restarted the processes (`--max-restarts`): the run folder this launch
    started, found by the launch id its config.json holds: `output` when one was given, else a
    folder under `checkpoints_root`. None on a first start, or when no folder was written yet."""
    if not restart_count() or launch_id() is None:
        return None
    candidates = [Path(output)] if output is not None else sorted(Path(checkpoints_root).glob("*/"))
    for folder in candidates:
        try:
            saved = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(saved, dict) and saved.get("launch_id") == launch_id():
            return folder
    return None
