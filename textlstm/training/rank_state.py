"""What each process of a run keeps to itself, kept in the one trainer state process 0 saves.

Each process has its own random stream (its dropout masks) and, with stream batching, the LSTM
state of its own rows. Saving gathers them from every process; resuming gives each process its own
back, so a resumed run goes on exactly as if it had not stopped. With one process this is the
random state and the LSTM state of the run, as they always were.
"""

from __future__ import annotations

import torch

from textlstm.model.network import State
from textlstm.training import distributed


def gather(lstm_state: State | None) -> dict:
    """The trainer-state entries for all processes; every process must call this (it is an exchange).

    lstm_state holds all rows of the step, process 0's first: on resume, each process takes its own
    rows again, whatever the number of processes then.
    """
    mine = {
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "lstm_state": None if lstm_state is None else tuple(t.cpu() for t in lstm_state),
    }
    everyone = distributed.gather(mine)
    states = [process["lstm_state"] for process in everyone]
    return {
        "rng": everyone[0]["rng"],
        "cuda_rng": everyone[0]["cuda_rng"],
        "rng_per_process": [process["rng"] for process in everyone],
        "cuda_rng_per_process": [process["cuda_rng"] for process in everyone],
        "lstm_state": None if states[0] is None else tuple(torch.cat(parts, dim=1) for parts in zip(*states)),
    }


def restore(state: dict, device: torch.device, rows_per_process: int) -> State | None:
    """Set this process's random state from a saved trainer state; return the LSTM state of its rows.

    A process the saved run did not have keeps the stream `distributed.seed_this_process` gave it.
    """
    rank = distributed.rank()
    streams = state.get("rng_per_process") or [state["rng"]]
    if rank < len(streams):
        torch.set_rng_state(streams[rank])
    cuda_streams = state.get("cuda_rng_per_process") or [state.get("cuda_rng")]
    if rank < len(cuda_streams) and cuda_streams[rank] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_streams[rank])
    if state.get("lstm_state") is None:
        return None
    first = rank * rows_per_process
    rows = tuple(t[:, first : first + rows_per_process] for t in state["lstm_state"])
    if rows[0].shape[1] != rows_per_process:
        raise ValueError(
            f"the saved LSTM state has {state['lstm_state'][0].shape[1]} rows, "
            f"not {rows_per_process * distributed.world_size()}"
        )
    return tuple(t.to(device) for t in rows)
