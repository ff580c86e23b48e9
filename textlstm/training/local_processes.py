"""`textlstm train --nproc N`: N training processes on this machine, started by PyTorch's own
launcher (torch.distributed.run, the module behind `torchrun`).

It runs what `torchrun --standalone --nproc-per-node N --shutdown-timeout 300 -m textlstm train ...`
runs, with three differences: the CPU threads are split between the processes (unless
OMP_NUM_THREADS is set), torchrun's own log lines are left out, and how the processes ended is told
in one line (a process that failed has already printed its own error line).
"""

from __future__ import annotations

import logging
import os

from textlstm.errors import TextlstmError
from textlstm.hardware.threads import usable_cores

# After Ctrl-C or SIGTERM (which torchrun passes on to each process), how long the processes have to
# finish their step, evaluate and save before torchrun kills them.
SHUTDOWN_SECONDS = 300


def without_option(args: list[str], name: str) -> list[str]:
    """`args` without `name VALUE` / `name=VALUE`."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            kept.append(arg)
    return kept


def run_on_this_machine(nproc: int, train_args: list[str]) -> int:
    """Run `textlstm train TRAIN_ARGS` in `nproc` processes; return the exit code for the command."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // nproc))
    args = torchrun.parse_args(
        [
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            "--max-restarts",
            "0",
            "--shutdown-timeout",
            str(SHUTDOWN_SECONDS),
            "--module",
            "textlstm",
            "train",
            *train_args,
        ]
    )
    _quiet_torchrun()
    try:
        torchrun.run(args)
    except SignalException as stop:  # Ctrl-C or a kill of this launcher: torchrun passed it on to the processes
        return 128 + int(stop.sigval)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except ChildFailedError as error:
        process, failure = error.get_first_failure()
        if failure.exitcode < 0:
            raise TextlstmError(
                f"process {process} of {nproc} was killed by {failure.signal_name()}; the others were stopped"
            ) from None
        return failure.exitcode
    return 0


def _quiet_torchrun() -> None:
    """Leave torchrun's log lines out ("Received 15 death signal, shutting down workers", ...). Its
    modules set their own loggers' levels when imported, so the parent's level alone does not do it."""
    for name in list(logging.root.manager.loggerDict):
        if name == "torch.distributed.elastic" or name.startswith("torch.distributed.elastic."):
            logging.getLogger(name).setLevel(logging.CRITICAL)
