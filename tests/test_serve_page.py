"""The page at / in a real headless Chromium: type a message, see the streamed answer; score a text,
see each character shaded by its surprisal and the model's alternatives on hover; inspect a text,
see it shaded by a cell's state or gate and the gates on hover; screenshots.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: commands in on
fd 3, replies out on fd 4, each a JSON message ended by a NUL byte), so no extra package is needed.
Skipped where /usr/bin/chromium is absent or the serve extra is not installed.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import write_tiny_checkpoint
from textlstm.generation.generator import load
from textlstm.serve.app import ServeSettings, create_app
from textlstm.serve.conversations import conversation_text
from textlstm.serve.security import AccessSettings
from textlstm.serve.server import RunningServer
from textlstm.serve.state import server_state
from textlstm.turns import TurnFormat

CHROMIUM = Path("/usr/bin/chromium")
WAIT = 60  # seconds: a bound on every wait, never reached when things work


class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, profile: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=1000,800",
        ]  # fmt: skip
        # A small Python launcher puts our pipe ends on fds 3 and 4, where Chromium expects them.
        launcher = (
            "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
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
            answer = browser.wait_for(
                "(() => { const a = document.querySelector('.answer'); "
                "return a && a.dataset.done && a.textContent; })()"
            )
            screenshot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
            metrics = server_state(app).engine.stats()
    finally:
        browser.close()
    (tmp_path / "page.png").write_bytes(screenshot)
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 5_000
    assert answer == lm.generate(
        conversation_text([("user", "the fox")], turns), temperature=0, max_tokens=40, stop=turns.stops()
    )
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
            browser.evaluate(
                "document.getElementById('key').value = 'wrong'; document.getElementById('key-form').requestSubmit();"
            )
            browser.wait_for("document.getElementById('log').textContent.includes('did not take that API key')")
            browser.evaluate(
                "document.getElementById('key').value = 'page-key'; "
                "document.getElementById('key-form').requestSubmit();"
            )
            browser.wait_for(
                "document.getElementById('model').textContent === 'tiny' && document.getElementById('key-form').hidden"
            )
            browser.evaluate(
                "document.getElementById('log').textContent = '';"
                "document.getElementById('temperature').value = '0';"
                "document.getElementById('max_tokens').value = '20';"
                "document.getElementById('input').value = 'the fox';"
                "document.getElementById('form').requestSubmit();"
            )
            answer = browser.wait_for(
                "(() => { const a = document.querySelector('.answer'); "
                "return a && a.dataset.done && a.textContent; })()"
            )
            stored = browser.evaluate("sessionStorage.getItem('textlstm-api-key')")
    finally:
        browser.close()
    assert stored == "page-key"
    assert answer == lm.generate(
        conversation_text([("user", "the fox")], turns), temperature=0, max_tokens=20, stop=turns.stops()
    )


# --- the Score tab ---------------------------------------------------------------------------------

# é and 😀 are byte-fallback tokens for the tiny model (two and four bytes, one character each; 😀 is
# two UTF-16 units in JavaScript, one code point in text_offset); the markup must show as text.
SCORED = "the fox é😀 <b>jumps</b>\nover the lazy dog."


def api_scores(url: str, text: str, key: str | None = None) -> dict:
    """The legacy logprobs object of the public scoring call the page makes."""
    body = json.dumps({"model": "tiny", "prompt": text, "echo": True, "max_tokens": 0, "logprobs": 5}).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    with urllib.request.urlopen(
        urllib.request.Request(url + "/v1/completions", body, headers), timeout=WAIT
    ) as response:
        return json.load(response)["choices"][0]["logprobs"]


def bits_per_character(logprobs: dict, text: str) -> float:
    return -sum(logprobs["token_logprobs"]) / math.log(2) / len(text)


def bits_of_each_character(logprobs: dict) -> list[float]:
    """Summed -log2 p of the tokens at each text offset: the tokens that spell one character share its offset."""
    bits = {}
    for offset, logprob in zip(logprobs["text_offset"], logprobs["token_logprobs"]):
        bits[offset] = bits.get(offset, 0.0) - logprob / math.log(2)
    return list(bits.values())


def score_in_page(browser: Browser, text: str) -> None:
    browser.evaluate(
        "document.getElementById('tab-score').click();"
        f"document.getElementById('input').value = {json.dumps(text)};"
        "document.getElementById('form').requestSubmit();"
    )
    browser.wait_for(
        "document.getElementById('bpc').textContent !== '' || document.querySelector('#log .error') !== null"
    )


def shown_spans(browser: Browser) -> list[dict]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#score-text span'), s =>"
        " ({text: s.textContent, bits: Number(s.dataset.bits), background: getComputedStyle(s).backgroundColor}))"
    )


def luminance(css_rgb: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_rgb)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def hover(browser: Browser, span_index: int) -> str:
    """Move the mouse onto a span of the scored text; the tip's text once it shows."""
    box = browser.evaluate(
        f"(() => {{ const r = document.querySelectorAll('#score-text span')[{span_index}].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
    return browser.wait_for("!document.getElementById('tip').hidden && document.getElementById('tip').textContent")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_the_score_tab_shades_each_character_by_its_surprisal_and_shows_the_alternatives(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=TurnFormat()))
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("document.getElementById('model').textContent === 'tiny'")
            score_in_page(browser, SCORED)
            spans = shown_spans(browser)
            whole_text = browser.evaluate("document.getElementById('score-text').textContent")
            shown_bpc = browser.evaluate(
                "[document.getElementById('bpc').textContent, Number(document.getElementById('bpc').dataset.bpc)]"
            )
            tip = hover(browser, [span["text"] for span in spans].index("é"))
            tip_lines = browser.evaluate("Array.from(document.querySelectorAll('#tip li'), li => li.textContent)")
            screenshot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
            logprobs = api_scores(server.url, SCORED)
    finally:
        browser.close()
    (tmp_path / "score.png").write_bytes(screenshot)
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 5_000

    # The spans are the text, exactly, one per character here (a char model), é and 😀 whole.
    assert whole_text == SCORED and "".join(span["text"] for span in spans) == SCORED
    assert [span["text"] for span in spans] == list(SCORED)
    assert [span["bits"] for span in spans] == pytest.approx(bits_of_each_character(logprobs), rel=1e-9)
    by_surprisal = sorted(spans, key=lambda span: span["bits"])
    shades = [luminance(span["background"]) for span in by_surprisal]
    assert shades == sorted(shades, reverse=True) and shades[0] > shades[-1]  # more surprising, darker

    expected = bits_per_character(logprobs, SCORED)
    text, figure = shown_bpc
    assert text.startswith(f"{expected:.3f} bits per character") and figure == pytest.approx(expected, rel=1e-9)

    # é is two byte tokens: the tip shows each, its probability, and the model's five most likely there.
    first_byte = logprobs["tokens"].index("bytes:\\xc3")
    assert logprobs["tokens"][first_byte + 1] == "bytes:\\xa9"
    assert "bytes:\\xc3  p " in tip and "bytes:\\xa9  p " in tip
    most_likely = sorted(logprobs["top_logprobs"][first_byte].items(), key=lambda item: -item[1])[:5]
    assert len(tip_lines) == 10
    for line, (name, _) in zip(tip_lines, most_likely):
        assert line.startswith(json.dumps(name, ensure_ascii=False) + "  ") and re.search(r"\d(\.\d+)?(%|e-\d+)$", line)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_with_a_key_set_the_score_tab_sends_it_once_given(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    app = create_app(
        lm, ServeSettings(model_name="tiny", turn_format=TurnFormat()), AccessSettings(api_keys=("page-key",))
    )
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("!document.getElementById('key-form').hidden")
            score_in_page(browser, SCORED)  # before the key is given: refused, and the page asks for it
            refused = browser.evaluate("document.querySelector('#log .error').textContent")
            browser.evaluate(
                "document.getElementById('key').value = 'page-key'; "
                "document.getElementById('key-form').requestSubmit();"
            )
            browser.wait_for(
                "document.getElementById('model').textContent === 'tiny' && document.getElementById('key-form').hidden"
            )
            score_in_page(browser, SCORED)
            spans = shown_spans(browser)
            shown = browser.evaluate("Number(document.getElementById('bpc').dataset.bpc)")
            logprobs = api_scores(server.url, SCORED, key="page-key")
    finally:
        browser.close()
    assert "API key" in refused
    assert "".join(span["text"] for span in spans) == SCORED
    assert shown == pytest.approx(bits_per_character(logprobs, SCORED), rel=1e-9)


# --- the Cells tab ---------------------------------------------------------------------------------

INSPECTED = 'He said "the FOX (jumps [over])" é\n  the lazy dog.'
GATES = ("input", "forget", "output")


def api_inspection(url: str, text: str, key: str | None = None) -> dict:
    """The /v1/inspect answer the Cells tab shows."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url + "/v1/inspect", json.dumps({"text": text}).encode(), headers)
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        return json.load(response)


def api_value(answer: dict, layer: int, name: str, token: int, cell: int) -> float:
    """One value of the answer, read from its bytes as docs/serving.md says."""
    values = answer["layers"][layer]
    unit = base64.b64decode(values[name])[token * answer["cells_per_layer"] + cell] / 255
    if name == "cell":
        return (2 * unit - 1) * values["cell_scale"][cell]
    return 2 * unit - 1 if name == "hidden" else unit


def inspect_in_page(browser: Browser, text: str) -> None:
    browser.evaluate(
        "document.getElementById('tab-cells').click();"
        f"document.getElementById('input').value = {json.dumps(text)};"
        "document.getElementById('form').requestSubmit();"
    )
    browser.wait_for("document.getElementById('cells-text') !== null || document.querySelector('#log .error') !== null")


def rgba(css: str) -> list[float]:
    """[red, green, blue, alpha] of a computed CSS colour (alpha 1 when it has none)."""
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return values + [1.0] * (4 - len(values))


def shaded(browser: Browser) -> list[dict]:
    return browser.evaluate(
        "Array.from(document.querySelectorAll('#cells-text span'), s => ({text: s.textContent,"
        " first: Number(s.dataset.first), last: Number(s.dataset.last), value: Number(s.dataset.value),"
        " background: getComputedStyle(s).backgroundColor}))"
    )


def choose(browser: Browser, element: str, value) -> None:
    browser.evaluate(
        f"(() => {{ const e = document.getElementById('{element}'); e.value = {json.dumps(str(value))};"
        " e.dispatchEvent(new Event('change')); })()"
    )


def hover_cells_span(browser: Browser, span_index: int) -> str:
    box = browser.evaluate(
        f"(() => {{ const r = document.querySelectorAll('#cells-text span')[{span_index}].getBoundingClientRect();"
        " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
    )
    browser.send("Input.dispatchMouseEvent", type="mouseMoved", x=box[0], y=box[1])
    return browser.wait_for("!document.getElementById('tip').hidden && document.getElementById('tip').textContent")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_the_cells_tab_shades_the_text_by_a_cell_a_gate_or_a_features_best_cell(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=TurnFormat()))
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("document.getElementById('model').textContent === 'tiny'")
            inspect_in_page(browser, INSPECTED)
            answer = api_inspection(server.url, INSPECTED)
            first_view = shaded(browser)
            first_choice = browser.evaluate(
                "['cells-feature', 'cells-layer', 'cells-index', 'cells-series']"
                ".map(id => document.getElementById(id).value)"
            )
            summary = browser.evaluate("document.getElementById('cells-summary').textContent")
            found_rows = browser.evaluate("document.querySelectorAll('#cells-found tr[data-layer]').length")

            quotes = next(cell for cell in answer["cells"] if cell["feature"] == "inside_quotes")
            choose(browser, "cells-feature", "inside_quotes")
            quote_choice = browser.evaluate(
                "[document.getElementById('cells-layer').value, document.getElementById('cells-index').value]"
            )
            quote_view = shaded(browser)

            choose(browser, "cells-layer", 0)
            choose(browser, "cells-index", 5)
            choose(browser, "cells-series", "forget")
            forget_view = shaded(browser)
            forget_feature = browser.evaluate("document.getElementById('cells-feature').value")
            e_acute = [span["text"] for span in forget_view].index("é")
            tip = hover_cells_span(browser, e_acute)
            screenshot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    (tmp_path / "cells.png").write_bytes(screenshot)
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 5_000

    # A span per character, é (two byte tokens) one, the whole text and nothing else.
    assert [span["text"] for span in first_view] == list(INSPECTED)
    assert first_view[e_acute]["last"] == first_view[e_acute]["first"] + 1
    assert summary.startswith(f"{len(answer['tokens'])} tokens, {len(INSPECTED)} characters")
    assert found_rows == len(answer["cells"]) > 0

    # First shown: the best cell of all, by c; then the chosen feature's best cell.
    best = answer["cells"][0]
    assert first_choice == [best["feature"], str(best["layer"]), str(best["index"]), "cell"]
    assert quote_choice == [str(quotes["layer"]), str(quotes["index"])]
    scale = answer["layers"][quotes["layer"]]["cell_scale"][quotes["index"]]
    for span in quote_view:
        assert span["value"] == pytest.approx(api_value(answer, quotes["layer"], "cell", span["last"], quotes["index"]))
        *color, alpha = rgba(span["background"])  # red above 0, blue below, as strong as |c| / its largest |c|
        assert color == ([220, 50, 32] if span["value"] >= 0 else [30, 90, 220])
        assert alpha == pytest.approx(0.85 * abs(span["value"]) / scale, abs=0.01)

    # A cell and a gate chosen by hand: layer 0, cell 5's forget gate, no feature's best cell.
    best_of = {}
    for cell in answer["cells"]:
        best_of.setdefault(cell["feature"], (cell["layer"], cell["index"]))
    assert forget_feature == next((feature for feature, cell in best_of.items() if cell == (0, 5)), "")
    assert [span["value"] for span in forget_view] == pytest.approx(
        [api_value(answer, 0, "forget", span["last"], 5) for span in forget_view]
    )

    # Hovering é shows the gates and states of both its tokens.
    first = forget_view[e_acute]["first"]
    assert tip.startswith('"é": layer 0, cell 5')
    for token in (first, first + 1):
        gates = "  ".join(f"{gate} {api_value(answer, 0, gate, token, 5):.2f}" for gate in GATES)
        c, h = api_value(answer, 0, "cell", token, 5), api_value(answer, 0, "hidden", token, 5)
        assert f"token {token}{gates}c {c:+.2f}  h {h:+.2f}" in tip


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium")
def test_with_a_key_set_the_cells_tab_sends_it_once_given(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))
    access = AccessSettings(api_keys=("page-key",))
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=TurnFormat()), access)
    browser = Browser(tmp_path / "profile")
    try:
        with RunningServer(app, "127.0.0.1", 0) as server:
            browser.open(server.url + "/")
            browser.wait_for("!document.getElementById('key-form').hidden")
            inspect_in_page(browser, INSPECTED)  # before the key is given: refused, and the page asks for it
            refused = browser.evaluate("document.querySelector('#log .error').textContent")
            browser.evaluate(
                "document.getElementById('key').value = 'page-key';"
                " document.getElementById('key-form').requestSubmit();"
            )
            browser.wait_for(
                "document.getElementById('model').textContent === 'tiny' && document.getElementById('key-form').hidden"
            )
            inspect_in_page(browser, INSPECTED)
            spans = shaded(browser)
    finally:
        browser.close()
    assert "API key" in refused
    assert "".join(span["text"] for span in spans) == INSPECTED
