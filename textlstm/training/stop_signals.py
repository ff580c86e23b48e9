"""A clean stop on Ctrl-C: the first one asks the training loop to stop after the current step
(and save), a second one interrupts at once."""

from __future__ import annotations

import signal
import threading

from textlstm.training import distributed


class StopFlag:
    """A context manager that, while active, turns SIGINT into `requested = True`.

    Signal handlers can only be set from the main thread; elsewhere (a training run started from a
    worker thread) Ctrl-C keeps its usual meaning and `requested` stays False.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        # Under torchrun each Ctrl-C reaches a process twice (from the terminal, and forwarded by
        # torchrun), so only the first counts; torchrun ends the processes after --shutdown-timeout.
        if self.requested and not distributed.under_torchrun():
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
