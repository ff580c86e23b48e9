"""The page at / in a real headless Chromium: type a message, see the streamed answer, screenshot.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands in on
fd 3, replies out on fd 4, each a JSON message ended by a NUL byte), so no extra package is needed.
Skipped where /usr/bin/chromium is absent or the serve extra is not installed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from textlstm.generation.generator import load  # noqa: E402
from textlstm.serve.app import ServeSettings, create_app  # noqa: E402
from textlstm.serve.conversations import conversation_text  # noqa: E402
from textlstm.serve.security import AccessSettings  # noqa: E402
from textlstm.serve.server import RunningServer  # noqa: E402
from textlstm.turns import TurnFormat  # noqa: E402

from conftest import write_tiny_checkpoint  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
WAIT = 60  # seconds: a bound on every wait, never reached when things work


class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, profile: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--remote-debugging-pipe", "--window-size=1000,800",
        ]  # fmt: skip
        # A small Python launcher puts our pipe ends on fds 3 and 4, where Chromium expects them.
        launcher = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); os.execv(sys.argv[3], sys.argv[3:])"
        self.process = subprocess.Popen(
            [sys.executable, "-c", launcher, str(to_browser_read), str(from_browser_write), str(CHROMIUM), *flags],
            pass_fds=(to_browser_read, from_browser_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.session = None

    def send(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + WAIT
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"never true in the page: {expression}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_the_page_streams_a_chat_answer_in_a_real_browser(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    turns = TurnFormat()
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=turns))
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("document.getElementById('model').textContent === 'tiny'")
            browser.evaluate(
                "document.getElementById('temperature').value = '0';"
                "document.getElementById('max_tokens').value = '40';"
                "document.getElementById('input').value = 'the fox';"
                "document.getElementById('form').requestSubmit();"
            )
            answer = browser.wait_for("(() => { const a = document.querySelector('.answer'); return a && a.dataset.done && a.textContent; })()")
            screenshot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
            metrics = app.state.engine.stats()
    finally:
        browser.close()
    (tmp_path / "page.png").write_bytes(screenshot)
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 5_000
    assert answer == lm.generate(conversation_text([("user", "the fox")], turns), temperature=0, max_tokens=40, stop=turns.stops())
    assert metrics["sequences"] == 0


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_with_a_key_set_the_page_asks_for_it_and_sends_it(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    turns = TurnFormat()
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=turns), AccessSettings(api_keys=("page-key",)))
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("!document.getElementById('key-form').hidden")
            assert browser.evaluate("document.getElementById('model').textContent") == ""
            browser.evaluate("document.getElementById('key').value = 'wrong'; document.getElementById('key-form').requestSubmit();")
            browser.wait_for("document.getElementById('log').textContent.includes('did not take that API key')")
            browser.evaluate("document.getElementById('key').value = 'page-key'; document.getElementById('key-form').requestSubmit();")
            browser.wait_for("document.getElementById('model').textContent === 'tiny' && document.getElementById('key-form').hidden")
            browser.evaluate(
                "document.getElementById('log').textContent = '';"
                "document.getElementById('temperature').value = '0';"
                "document.getElementById('max_tokens').value = '20';"
                "document.getElementById('input').value = 'the fox';"
                "document.getElementById('form').requestSubmit();"
            )
            answer = browser.wait_for("(() => { const a = document.querySelector('.answer'); return a && a.dataset.done && a.textContent; })()")
            stored = browser.evaluate("sessionStorage.getItem('textlstm-api-key')")
    finally:
        browser.close()
    assert stored == "page-key"
    assert answer == lm.generate(conversation_text([("user", "the fox")], turns), temperature=0, max_tokens=20, stop=turns.stops())
