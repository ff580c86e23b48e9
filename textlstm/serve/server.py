"""Running the app with uvicorn in a background thread, on a socket bound before it starts.

Binding first turns "address in use" into one clear error and lets port 0 pick a free port (the
tests do). Stopping ends the engine first, so every open stream gets its last event at once and
uvicorn's graceful shutdown does not wait for answers that would run for minutes.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from textlstm.errors import TextlstmError

GRACEFUL_SECONDS = 5  # after a stop, how long open connections get to finish


class RunningServer:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"):
        self.app = app
        self.socket = _bind(host, port)
        bound_host, self.port = self.socket.getsockname()[:2]
        self.url = f"http://{_url_host(bound_host)}:{self.port}"
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=GRACEFUL_SECONDS
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]}, name="textlstm-http", daemon=True)

    def start(self, timeout: float = 60.0) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise TextlstmError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """End every sequence (their clients get a final error event), then stop serving."""
        engine = getattr(self.app.state, "engine", None)
        if engine is not None:
            engine.shutdown()
        self._server.should_exit = True
        self._thread.join(timeout)
        self.socket.close()

    def force_stop(self) -> None:
        self._server.force_exit = True

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as error:
        raise TextlstmError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise TextlstmError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
