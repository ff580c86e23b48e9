"""A clean stop on Ctrl-C (SIGINT) or SIGTERM (what Slurm, Kubernetes, `timeout` and torchrun's
agent send): the first asks the training loop to stop after the current step and save; the command
then exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).

After that, a Ctrl-C interrupts at once (someone at the terminal does not want to wait for the
save), but a second SIGTERM changes nothing: the stop it asks for is under way, and whoever sent it
ends the process with SIGKILL when their grace period is over.
"""

from __future__ import annotations

import signal
import threading

from textlstm.training import distributed

# When several processes stopped for different signals, the first of these that any received names the stop.
HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """A context manager that, while active, turns SIGINT and SIGTERM into `signal` (the first one received).

    Signal handlers can only be set from the main thread; elsewhere (a training run started from a
    worker thread) both signals keep their usual meaning and `signal` stays None.
    """

    def __init__(self):
        self.signal: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in HANDLED}
        return self

    def _handle(self, signum, frame) -> None:
        # Under torchrun each Ctrl-C reaches a process twice (from the terminal, and forwarded by
        # torchrun), so only the first counts; torchrun ends the processes after --shutdown-timeout.
        if self.requested and signum == signal.SIGINT and not distributed.under_torchrun():
            raise KeyboardInterrupt
        if not self.requested:
            self.signal = signal.Signals(signum)

    def votes(self) -> list[float]:
        """This process's stop request as one number per signal in HANDLED (1.0 for the one received),
        for the processes to add up (`agreed`)."""
        return [float(self.signal == signum) for signum in HANDLED]

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def agreed(votes: list[float]) -> signal.Signals | None:
    """The signal that stops the run, from the `votes` of all processes added up; None: train on."""
    return next((signum for signum, count in zip(HANDLED, votes) if count > 0), None)
