"""Running the app with uvicorn in a background thread, on a socket bound before it starts.

Binding first turns "address in use" into one clear error and lets port 0 pick a free port (the
tests do). Stopping ends the engine first, so every open stream gets its last event at once and
uvicorn's graceful shutdown does not wait for answers that would run for minutes. A connection
still open GRACEFUL_SECONDS later (a client that sends its body or reads its answer slowly, or not
at all) is closed, at once after a second Ctrl-C (`force_stop`): its request then ends as if its
client had left. uvicorn's own ways, cancelling such a request's task or a forced exit that skips
the app's shutdown, log the cancellation as a traceback.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from textlstm.errors import TextlstmError
from textlstm.serve.state import server_state

GRACEFUL_SECONDS = 5  # after a stop, how long open connections get to finish


class RunningServer:
    """An app made by create_app or create_loading_app, served on host:port."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"):
        self.app = app
        self.socket = _bind(host, port)
        bound_host, self.port = self.socket.getsockname()[:2]
        self.url = f"http://{_url_host(bound_host)}:{self.port}"
        # uvicorn's own limit, after which it cancels the requests left, is never reached: _Server closes
        # their connections first.
        config = uvicorn.Config(
            app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=4 * GRACEFUL_SECONDS
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, name="textlstm-http", daemon=True
        )

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
        engine = server_state(self.app).engine
        if engine is not None:
            engine.shutdown()
        self._server.should_exit = True
        self._thread.join(timeout)
        self.socket.close()

    def force_stop(self) -> None:
        """Close every connection now rather than GRACEFUL_SECONDS after the stop."""
        self._server.close_connections_soon()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Server(uvicorn.Server):
    """uvicorn's server, whose stop closes the connections still open GRACEFUL_SECONDS after it."""

    loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closing = asyncio.get_running_loop().call_later(GRACEFUL_SECONDS, self._close_connections)
        try:
            await super().shutdown(sockets)
        finally:
            closing.cancel()

    def close_connections_soon(self) -> None:
        """From any thread."""
        try:
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._close_connections)
        except RuntimeError:  # the loop has closed: nothing is open
            pass

    def _close_connections(self) -> None:
        for connection in list(self.server_state.connections):
            connection.transport.abort()  # close() would wait to send what a client does not read


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
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
