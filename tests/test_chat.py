"""`textlstm chat`: the session keeps the LSTM state across turns; slash commands; piped use."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from textlstm.api import Session, TextGenerator
from textlstm.chat import ChatRepl

from conftest import tiny_char_model, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_tiny_checkpoint(tmp_path / "checkpoints" / "run")


def chat(*args: str, input: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "textlstm", "chat", *args], input=input, capture_output=True, text=True, env=env, timeout=60, check=False
    )


# --- the session (Python API) ---------------------------------------------------------------------


def test_session_carries_the_conversation_in_its_state():
    """Turn 2 from the carried state equals a fresh read of the whole conversation so far."""
    model, tokenizer, _ = tiny_char_model()
    lm = TextGenerator(model, tokenizer)
    session = lm.session(temperature=1.0, max_tokens=25, seed=3)
    first = "".join(session.send("the fox"))
    rng_state = session.rng.get_state()
    second = "".join(session.send("the dog"))
    assert len(first) == 25 and len(second) == 25

    def reply_after(text: str) -> str:
        ids = lm.tokenizer.encode(text)
        rng = torch.Generator()
        rng.set_state(rng_state)  # the same random draws as the session's second turn
        return "".join(lm.reply(lm.new_stepper(ids), ids, session.options, rng))

    assert second == reply_after(f"the fox\n{first}the dog\n")
    with_history = lm.new_stepper(lm.tokenizer.encode(f"the fox\n{first}the dog\n")).logits
    without = lm.new_stepper(lm.tokenizer.encode("the dog\n")).logits
    assert not torch.allclose(with_history, without, atol=1e-4)  # the first turn mattered

    session = lm.session(temperature=0, max_tokens=25)
    greedy = "".join(session.send("the fox"))
    "".join(session.send("the dog"))
    session.reset()
    assert "".join(session.send("the fox")) == greedy


def test_answers_end_at_a_blank_line_or_end_of_text():
    model, tokenizer, _ = tiny_char_model(bias={"\n": 100})  # always a newline
    assert "".join(TextGenerator(model, tokenizer).session(max_tokens=50).send("hi")) == ""
    assert TextGenerator(model, tokenizer).generate("hi", max_tokens=50) == "\n" * 50

    model, tokenizer, _ = tiny_char_model(bias={"<|endoftext|>": 100})
    assert "".join(TextGenerator(model, tokenizer).session(max_tokens=50).send("hi")) == ""


def test_session_settings_are_checked_and_seed_restarts_the_random_stream():
    model, tokenizer, _ = tiny_char_model()
    session = Session(TextGenerator(model, tokenizer), temperature=1.5, max_tokens=30, seed=5)
    first = "".join(session.send("the"))
    session.reset()
    assert "".join(session.send("the")) != first  # the random stream went on
    session.configure(seed=5)
    session.reset()
    assert "".join(session.send("the")) == first
    with pytest.raises(Exception, match="top-p"):
        session.configure(top_p=2.0)
    assert session.options.top_p == 1.0


# --- the REPL -------------------------------------------------------------------------------------


def test_piped_chat_answers_each_line_and_obeys_slash_commands(checkpoint, tmp_path):
    script = "\n".join(
        [
            "/temperature 1.5",
            "/seed 5",
            "the quick fox",  # A1
            "/reset",
            "/seed 5",
            "the quick fox",  # A2: the same, from the same state and seed
            "the quick fox",  # A3: differs, the conversation went on
            "/temperature 0",
            "/reset",
            "the quick fox",  # G1
            "/reset",
            "/seed 9",
            "the quick fox",  # G2: greedy, the seed does not matter
            "/temperature -1",
            "/top-k many",
            "/top-p 0",
            "/max-tokens 0",
            "/frobnicate",
            "/max-tokens 8",
            "",
            "the end",  # E
            f"/save {tmp_path / 'talk.txt'}",
            "/save /nonexistent-dir/talk.txt",
            "/quit",
            "this line is never answered",
        ]
    )
    result = chat("--max-tokens", "20", input=script + "\n")
    assert result.returncode == 0, result.stderr
    answers = result.stdout.split("\n")
    assert answers[-1] == ""  # every answer ends its line
    a1, a2, a3, g1, g2, end = answers[:-1]  # the blank line and everything after /quit get no answer
    assert a1 == a2 != a3
    assert g1 == g2 != a1
    assert len(a1) == len(g1) == 20 and len(end) == 8

    messages = result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    for expected in ("temperature", "/top-k needs a whole number", "top-p", "max-tokens", "unknown command /frobnicate",
                     "cannot save"):
        assert any(expected in line for line in messages), (expected, messages)

    transcript = (tmp_path / "talk.txt").read_text()
    assert transcript.count("> the quick fox\n") == 5
    assert f"> the quick fox\n{a1}\n\n" in transcript and f"> the end\n{end}\n" in transcript


def test_piped_chat_ends_at_end_of_input_without_banners(checkpoint):
    result = chat("--max-tokens", "5", "--seed", "2", input="hello\nthere\n")
    assert result.returncode == 0
    assert [len(line) for line in result.stdout.splitlines()] == [5, 5]
    assert result.stderr == ""


def test_chat_without_a_checkpoint_is_one_line(tmp_path):
    result = chat(input="hello\n")
    assert result.returncode != 0
    assert result.stderr.startswith("error: no checkpoint found") and result.stderr.count("\n") == 1


class InterruptedSession:
    """Answers 'ab', then the user presses Ctrl-C."""

    def __init__(self):
        self.turns = 0

    def send(self, text):
        self.turns += 1
        yield "a"
        yield "b"
        if text == "interrupt me":
            raise KeyboardInterrupt


def test_ctrl_c_stops_the_answer_and_the_repl_goes_on(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("interrupt me\nnext\n"))
    out, messages = io.StringIO(), io.StringIO()
    session = InterruptedSession()
    repl = ChatRepl(session, interactive=False, out=out, messages=messages)
    repl.run()
    assert session.turns == 2
    assert out.getvalue() == "ab [stopped]\nab\n"


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs a Linux pseudo-terminal")
def test_terminal_session_prompts_and_ctrl_c_stops_a_long_answer(checkpoint, tmp_path):
    import pty
    import select
    import time

    pid, terminal = pty.fork()
    if pid == 0:  # the child: a chat on a terminal, with its history file in tmp_path
        os.environ.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
        os.execv(sys.executable, [sys.executable, "-m", "textlstm", "chat", "--max-tokens", "1000000"])

    def read_until(marker: bytes, seconds: float = 30, at_least: int = 0) -> bytes:
        received, deadline = b"", time.monotonic() + seconds
        while (marker not in received or len(received) < at_least) and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    received += os.read(terminal, 65536)
                except OSError:  # the child has gone
                    break
        return received

    try:
        assert b"/help" in read_until(b"> ")  # the banner, then the prompt
        os.write(terminal, b"the fox\r")
        assert len(read_until(b"", at_least=200)) >= 200  # a million-token answer is streaming
        os.write(terminal, b"\x03")  # Ctrl-C
        assert read_until(b"> ").rstrip().endswith(b"[stopped]\r\n>")
        os.write(terminal, b"/max-tokens 3\r")
        assert b"max-tokens = 3" in read_until(b"> ")
        os.write(terminal, b"\x04")  # Ctrl-D leaves
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert (tmp_path / ".textlstm_history").read_text().splitlines()[-2:] == ["the fox", "/max-tokens 3"]
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(terminal)
