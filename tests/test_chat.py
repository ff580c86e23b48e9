"""`textlstm chat`: the session keeps the LSTM state across turns; slash commands; piped use."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_CORPUS, TINY_MODEL, tiny_char_model, write_tiny_checkpoint
from textlstm.cli.repl import ChatRepl
from textlstm.generation.generator import Session, TextGenerator
from textlstm.tokens import EOT_ID
from textlstm.turns import TurnFormat

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_tiny_checkpoint(tmp_path / "checkpoints" / "run")


def chat(*args: str, input: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "textlstm", "chat", *args],
        input=input,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def chat_here(run_cli, monkeypatch):
    """`textlstm chat ARGS` with `input` piped to it, run in this process (no start-up time)."""

    def run(*args: str, input: str):
        monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        return run_cli("chat", *args)

    return run


# --- the session (Python API) ---------------------------------------------------------------------


def assert_same_state(stepper, text: str, lm: TextGenerator) -> None:
    """The stepper's state and next-token logits are those of reading `text` in one go."""
    one_go = lm.new_stepper(lm.tokenizer.encode(text))
    torch.testing.assert_close(stepper.logits, one_go.logits, atol=1e-4, rtol=1e-4)
    for carried, fresh in zip(stepper.state, one_go.state):
        torch.testing.assert_close(carried, fresh, atol=1e-5, rtol=1e-4)


def test_session_carries_the_conversation_in_its_state():
    """Each turn continues from the carried state, which equals a fresh read of the transcript."""
    model, tokenizer, _ = tiny_char_model()
    lm = TextGenerator(model, tokenizer)
    session = lm.session(temperature=1.0, max_tokens=25, seed=3)
    first = "".join(session.send("the fox"))
    second = "".join(session.send("the dog"))
    assert len(first) == 25 and len(second) == 25
    assert session.text() == f"the fox\n{first}\nthe dog\n{second}\n"  # each answer ends its line
    session.send("the end")  # the user's turn is read now, the answer when the iterator is consumed
    assert_same_state(session._stepper, f"the fox\n{first}\nthe dog\n{second}\nthe end\n", lm)
    with_history = session._stepper.logits
    assert not torch.allclose(with_history, lm.new_stepper(lm.tokenizer.encode("the end\n")).logits, atol=1e-4)

    session = lm.session(temperature=0, max_tokens=25)
    greedy = "".join(session.send("the fox"))
    "".join(session.send("the dog"))
    session.reset()
    assert "".join(session.send("the fox")) == greedy


class ScriptedSampler:
    """Picks the tokens of a given text, one per call, whatever the logits say."""

    def __init__(self, ids):
        self.ids = iter(ids)

    def mark_seen(self, ids):
        pass

    def __call__(self, logits):
        return next(self.ids)


def test_after_an_answer_stops_the_state_has_read_the_answer_and_not_what_stopped_it(monkeypatch):
    """The sampler reads past the end of an answer (the stop string, end of text); the state the
    next turn continues from must still be that of the transcript read in one go."""
    import textlstm.generation.generator

    model, tokenizer, _ = tiny_char_model(allow_newline=True)
    lm = TextGenerator(model, tokenizer)
    scripts = iter(
        [
            tokenizer.encode("the lazy dog\nfox! jumps over"),  # stops where the model starts the next user turn
            tokenizer.encode("quick\n\nbrown"),  # stops at a blank line
            [*tokenizer.encode("over"), EOT_ID, *tokenizer.encode("the")],  # stops at end of text
            tokenizer.encode("brown fox! THE"),  # stops at a --stop string
        ]
    )
    monkeypatch.setattr(
        textlstm.generation.generator, "TokenSampler", lambda *args, **kwargs: ScriptedSampler(next(scripts))
    )
    session = lm.session(turns=TurnFormat("fox! ", "dog. "), max_tokens=50, stop=("THE",))

    assert [("".join(session.send(line))) for line in ("hello", "the fox", "jumps", "lazy")] == [
        "the lazy dog",
        "quick",
        "over",
        "brown fox! ",
    ]
    session.send("over")  # reads the next user turn, up to where its answer starts
    read_so_far = (
        "fox! hello\ndog. the lazy dog\nfox! the fox\ndog. quick\nfox! jumps\ndog. over\n"
        "fox! lazy\ndog. brown fox! \nfox! over\ndog. "
    )
    assert session.text() == read_so_far + "\n"  # the (so far empty) answer ends its line
    assert_same_state(session._stepper, read_so_far, lm)


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
    for expected in (
        "temperature",
        "/top-k needs a whole number",
        "top-p",
        "max-tokens",
        "unknown command /frobnicate",
        "cannot save",
    ):
        assert any(expected in line for line in messages), (expected, messages)

    # The transcript is the text the model read: the conversations /reset separates, with a blank
    # line between them.
    assert (tmp_path / "talk.txt").read_text() == (
        f"the quick fox\n{a1}\n\nthe quick fox\n{a2}\nthe quick fox\n{a3}\n\nthe quick fox\n{g1}\n\n"
        f"the quick fox\n{g2}\nthe end\n{end}\n"
    )


def test_piped_chat_ends_at_end_of_input_without_banners(checkpoint):
    result = chat("--max-tokens", "5", "--seed", "2", input="hello\nthere\n")
    assert result.returncode == 0
    assert [len(line) for line in result.stdout.splitlines()] == [5, 5]
    assert result.stderr == ""


def test_chat_without_a_checkpoint_is_one_line(tmp_path):
    result = chat(input="hello\n")
    assert result.returncode != 0
    assert result.stderr.startswith("error: no checkpoint found") and result.stderr.count("\n") == 1


def test_prefixes_frame_each_turn_and_the_saved_transcript(chat_here, checkpoint, tmp_path):
    script = f"the quick fox\nthe lazy dog\n/show\n/save {tmp_path / 'talk.txt'}\n"
    result = chat_here(
        "--user-prefix", "fox! ", "--bot-prefix", "dog. ", "--max-tokens", "12", "--seed", "1", input=script
    )
    assert result.code == 0, result.err
    first, second = result.out.splitlines()  # piped: the answers alone, without the prefix
    assert (
        tmp_path / "talk.txt"
    ).read_text() == f"fox! the quick fox\ndog. {first}\nfox! the lazy dog\ndog. {second}\n"
    shown = settings_shown(result.err)
    assert shown["user-prefix"] == "'fox! '" and shown["bot-prefix"] == "'dog. '"
    assert (
        shown["temperature"] == "0.8"
        and shown["max-tokens"] == "12"
        and shown["seed"] == "1"
        and shown["stop"] == "(none)"
    )


def settings_shown(messages: str) -> dict[str, str]:
    """The `name = value` lines of /show."""
    pairs = (line.split(" = ", 1) for line in messages.splitlines() if " = " in line)
    return {name.strip(): value for name, value in pairs}


def test_a_block_of_lines_is_one_turn(chat_here, checkpoint, tmp_path):
    script = f'"""\nthe quick fox\n/reset is text here\n\n"""\nthe end\n/save {tmp_path / "talk.txt"}\n'
    result = chat_here("--max-tokens", "6", "--seed", "1", input=script)
    assert result.code == 0, result.err
    block_answer, end_answer = result.out.splitlines()
    assert (
        tmp_path / "talk.txt"
    ).read_text() == f"the quick fox\n/reset is text here\n\n{block_answer}\nthe end\n{end_answer}\n"
    unclosed = chat_here("--max-tokens", "6", input='"""\nthe fox\n')  # the end of input closes a block
    assert unclosed.code == 0 and len(unclosed.out.splitlines()) == 1


def test_load_sends_a_file_as_one_turn_and_a_bad_file_is_one_line(chat_here, checkpoint, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the quick\nbrown fox\n")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    script = (
        f"/load {prompt}\n/load {tmp_path / 'missing.txt'}\n/load {tmp_path / 'binary.txt'}\n"
        f"/load\n/save {tmp_path / 'talk.txt'}\n"
    )
    result = chat_here("--max-tokens", "6", "--seed", "1", input=script)
    assert result.code == 0, result.err
    (answer,) = result.out.splitlines()
    assert (tmp_path / "talk.txt").read_text() == f"the quick\nbrown fox\n{answer}\n"
    messages = result.err.splitlines()
    assert "Traceback" not in result.err
    assert sum("missing.txt" in line for line in messages) == 1
    assert any("binary.txt" in line and "UTF-8" in line for line in messages)
    assert "/load needs a file name" in messages


def test_chat_finds_the_turn_format_of_the_corpus_card_in_the_checkpoint(chat_here, run_cli, tmp_path):
    from textlstm.config import RunConfig
    from textlstm.generation.generator import load

    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "foxes.txt").write_text(TINY_CORPUS * 40)
    (tmp_path / "corpora" / "foxes.toml").write_text(
        'path = "foxes.txt"\n\n[chat]\nuser_prefix = "fox! "\nbot_prefix = "dog. "\n'
    )
    trained = run_cli("train", "--dataset", "foxes", *TINY_MODEL, "--max-steps", "1", "--output", tmp_path / "run")
    assert trained.code == 0, trained.err
    assert RunConfig.load(tmp_path / "run" / "config.json").data.turns == TurnFormat("fox! ", "dog. ")
    assert load(tmp_path / "run").session().turns == TurnFormat("fox! ", "dog. ")

    shown = settings_shown(
        chat_here("--checkpoint", str(tmp_path / "run"), "--bot-prefix", "cat. ", input="/show\n").err
    )
    assert shown["user-prefix"] == "'fox! '" and shown["bot-prefix"] == "'cat. '"  # the command line wins

    (tmp_path / "corpora" / "foxes.toml").write_text('path = "foxes.txt"\n\n[chat]\nuser = "fox! "\n')
    bad = run_cli("train", "--dataset", "foxes", *TINY_MODEL, "--max-steps", "1", "--output", tmp_path / "run2")
    assert bad.code != 0 and bad.err.count("\n") == 1 and "[chat]" in bad.err and "user" in bad.err, bad.err


class InterruptedSession:
    """Answers 'ab', then the user presses Ctrl-C."""

    turns = TurnFormat()

    def __init__(self):
        self.sends = 0

    def send(self, text):
        self.sends += 1
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
    assert session.sends == 2
    assert out.getvalue() == "ab [stopped]\nab\n"


class TypedLines:
    """Stands in for input(): returns the given lines, raises the given exceptions, records the prompts."""

    def __init__(self, *events):
        self.events = list(events)
        self.prompts = []

    def __call__(self, prompt=""):
        self.prompts.append(prompt)
        event = self.events.pop(0) if self.events else EOFError()
        if isinstance(event, BaseException):
            raise event
        return event


def test_ctrl_c_on_an_empty_line_says_how_to_leave(monkeypatch, tmp_path):
    import textlstm.cli.repl

    monkeypatch.setattr(textlstm.cli.repl, "HISTORY_FILE", tmp_path / "history")
    out = io.StringIO()
    for typed, hint_expected in (("", True), ("half a line", False)):
        monkeypatch.setattr(textlstm.cli.repl, "_typed_so_far", lambda typed=typed: typed)
        monkeypatch.setattr("builtins.input", TypedLines(KeyboardInterrupt(), "/quit"))
        out.seek(0), out.truncate()
        ChatRepl(InterruptedSession(), interactive=True, out=out).run()
        assert ("to leave, type /quit or press Ctrl-D" in out.getvalue()) == hint_expected


def test_color_marks_the_prompt_and_the_answer_prefix(chat_here, monkeypatch, tmp_path, checkpoint):
    import textlstm.cli.repl

    monkeypatch.setattr(textlstm.cli.repl, "HISTORY_FILE", tmp_path / "history")
    model, tokenizer, _ = tiny_char_model()
    session = TextGenerator(model, tokenizer).session(turns=TurnFormat("fox! ", "dog. "), max_tokens=5)
    for color in (True, False):
        typed = TypedLines("the quick fox")
        monkeypatch.setattr("builtins.input", typed)
        out = io.StringIO()
        ChatRepl(session, interactive=True, out=out, color=color).run()
        assert ("\x1b[" in typed.prompts[0]) == color and "fox! " in typed.prompts[0]
        assert ("\x1b[1;35mdog. \x1b[0m" in out.getvalue()) == color and "dog. " in out.getvalue()

    piped = chat_here("--color", "--max-tokens", "5", input="the fox\n/help\n")  # not a terminal: no colour
    assert piped.code == 0 and "\x1b" not in piped.out + piped.err


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs a Linux pseudo-terminal")
def test_terminal_session_prompts_and_ctrl_c_stops_a_long_answer(checkpoint, tmp_path):
    import pty
    import select
    import time

    pid, terminal = pty.fork()
    if pid == 0:  # the child: a chat on a terminal, with its history file in tmp_path
        os.environ.update(PYTHONPATH=str(REPO), HOME=str(tmp_path))
        # As a shell starts it on a terminal: a test run started in the background (`pytest &` from a
        # script) has SIGINT ignored, and an ignored signal stays ignored across exec, so Ctrl-C would not reach it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
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
        # Ctrl-C on an empty line. readline can hold a signal that lands while it sets up the line until
        # the next key: on a loaded machine, press Ctrl-C again if the first gets no answer.
        hint = b""
        for _ in range(5):
            os.write(terminal, b"\x03")
            hint += read_until(b"> ", seconds=5)
            if b"> " in hint:
                break
        assert b"to leave, type /quit or press Ctrl-D" in hint
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
