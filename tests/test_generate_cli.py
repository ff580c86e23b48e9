"""`textlstm generate`: streamed output, options, and one-line errors for bad input."""

from __future__ import annotations

import io
import itertools
import os
import select
import subprocess
import sys
import time
from ast import literal_eval
from pathlib import Path

import pytest
import torch

from conftest import TINY_CORPUS, write_tiny_checkpoint
from textlstm.config import RunConfig
from textlstm.data.tokenizer import build_tokenizer
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, save_weights

REPO = Path(__file__).resolve().parents[1]
CORPUS = TINY_CORPUS


def write_checkpoint(folder: Path) -> Path:
    """An untrained char model that writes plain characters and never ends the text by itself."""
    return write_tiny_checkpoint(folder, allow_newline=True)


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return write_checkpoint(tmp_path / "checkpoints" / "run")


def textlstm_process(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "textlstm", *args], env=env, **kwargs)


def run_textlstm(*args: str, input: str = "") -> subprocess.CompletedProcess:
    process = textlstm_process(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate(input, timeout=60)
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_output_is_the_prompt_then_its_continuation(run_cli, checkpoint):
    result = run_cli("generate", "--prompt", "The fox", "--max-tokens", "40", "--seed", "1")
    assert result.code == 0, result.err
    assert result.out.startswith("The fox") and result.out.endswith("\n")
    assert len(result.out) == len("The fox") + 40 + 1
    assert result.err == ""


def test_newest_checkpoint_is_the_default(run_cli, checkpoint, tmp_path):
    newer = write_checkpoint(tmp_path / "checkpoints" / "newer")
    with torch.no_grad():  # a model that only ever writes "z"
        model = LSTMLanguageModel(RunConfig.load(newer / CONFIG).model)
        model.decoder.bias.fill_(-30)
        model.decoder.bias[build_tokenizer("char", [CORPUS]).hf.token_to_id("z")] = 30
    time.sleep(0.01)
    save_weights(model, newer / BEST_WEIGHTS, step=1)
    assert run_cli("generate", "--prompt", "a", "--max-tokens", "5").out == "azzzzz\n"
    assert run_cli("generate", "--prompt", "a", "--max-tokens", "5", "--checkpoint", checkpoint).out != "azzzzz\n"


def test_seed_makes_it_repeatable(run_cli, checkpoint):
    args = ("generate", "--prompt", "the ", "--max-tokens", "60", "--temperature", "1.2")
    first = run_cli(*args, "--seed", "7").out
    assert first == run_cli(*args, "--seed", "7").out
    assert first != run_cli(*args, "--seed", "8").out


def test_num_samples_stop_and_greedy(run_cli, checkpoint):
    result = run_cli("generate", "--prompt", "the ", "--max-tokens", "30", "--num-samples", "3", "--seed", "2")
    samples = result.out.split("---\n")
    assert len(samples) == 3 and all(s.startswith("the ") for s in samples)
    assert len(set(samples)) == 3

    greedy = run_cli("generate", "--prompt", "the ", "--max-tokens", "30", "--temperature", "0").out
    stop = greedy[10:12]
    stopped = run_cli(
        "generate", "--prompt", "the ", "--max-tokens", "30", "--temperature", "0", "--stop", "NOPE", "--stop", stop
    )
    assert stopped.out == greedy[: greedy.find(stop, len("the "))] + "\n"


def test_prompt_dash_reads_stdin(checkpoint):
    result = run_textlstm("generate", "--prompt", "-", "--max-tokens", "5", "--seed", "3", input="the lazy dog")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("the lazy dog") and len(result.stdout) == len("the lazy dog") + 5 + 1


def test_unknown_characters_warn_on_one_line(run_cli, checkpoint):
    result = run_cli("generate", "--prompt", "the café ☕", "--max-tokens", "5")
    assert result.code == 0
    assert result.err.startswith("warning: ") and result.err.count("\n") == 1
    assert "'é'" in result.err and "'☕'" in result.err
    assert result.out.startswith("the café ☕")


def test_output_is_flushed_as_it_is_produced(checkpoint):
    """Read stdout of a long generation while the process is still running. PYTHONUNBUFFERED is
    unset, so without flushing the first text would come as one 8 KB block."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    process = textlstm_process(
        "generate",
        "--prompt",
        "the ",
        "--max-tokens",
        "1000000",
        "--seed",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        received = b""
        deadline = time.monotonic() + 60
        while len(received) < len("the ") + 20 and time.monotonic() < deadline:
            if select.select([process.stdout], [], [], 1.0)[0]:
                chunk = os.read(process.stdout.fileno(), 65536)
                assert chunk, "stdout closed before any text came"
                received += chunk
        assert received.startswith(b"the ") and len("the ") + 20 <= len(received) < 8192
        assert process.poll() is None  # a million tokens are far from done: the text came streamed
    finally:
        process.kill()
        process.wait()


def test_each_piece_is_flushed(run_cli, checkpoint, monkeypatch):
    events = []

    class RecordingStdout(io.StringIO):
        def write(self, text):
            events.append("write")
            return super().write(text)

        def flush(self):
            events.append("flush")

    monkeypatch.setattr(sys, "stdout", RecordingStdout())
    run_cli("generate", "--prompt", "the ", "--max-tokens", "30", "--seed", "1")
    assert events.count("write") >= 31
    assert all(after == "flush" for before, after in itertools.pairwise(events) if before == "write")


def test_help_explains_every_option(run_cli):
    from textlstm.cli.generate import generate

    result = run_cli("generate", "--help")
    assert result.code == 0
    for param in generate.params:
        assert param.help, f"{param.name} has no help text"
        assert param.opts[0] in result.out
    assert "prompt is printed first" in " ".join(result.out.split())


def one_line_error(result) -> None:
    assert result.code != 0
    assert result.out == ""
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    "option, value",
    [
        ("--temperature", "-1"),
        ("--top-p", "0"),
        ("--top-p", "1.5"),
        ("--top-k", "-3"),
        ("--max-tokens", "0"),
        ("--num-samples", "0"),
        ("--repetition-penalty", "0"),
        ("--temperature", "hot"),
    ],
)
def test_bad_values_are_one_line(run_cli, checkpoint, option, value):
    result = run_cli("generate", "--prompt", "a", option, value)
    one_line_error(result)
    assert option in result.err


def test_no_checkpoint_found(run_cli):
    result = run_cli("generate", "--prompt", "a")
    one_line_error(result)
    assert "no checkpoint found" in result.err


def test_unknown_device_is_one_line(run_cli, checkpoint):
    one_line_error(run_cli("generate", "--prompt", "a", "--device", "warp-drive"))


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: (f / CONFIG).unlink(), "config.json"),
        (lambda f: (f / CONFIG).write_text("{not json"), "config"),
        (lambda f: (f / TOKENIZER).write_text("garbage"), "tokenizer"),
        (lambda f: (f / TOKENIZER).unlink(), "tokenizer"),
        (lambda f: (f / BEST_WEIGHTS).write_bytes((f / BEST_WEIGHTS).read_bytes()[:100]), "weights"),
        (lambda f: (f / BEST_WEIGHTS).unlink(), "weights"),
    ],
    ids=[
        "missing config",
        "corrupt config",
        "garbage tokenizer",
        "missing tokenizer",
        "truncated weights",
        "missing weights",
    ],
)
def test_damaged_checkpoint_is_one_line(run_cli, checkpoint, damage, expected):
    damage(checkpoint)
    result = run_cli("generate", "--prompt", "a", "--checkpoint", checkpoint)
    one_line_error(result)
    assert expected in result.err


def test_missing_folder_and_bad_value_in_a_real_process(tmp_path):
    for args in (["--checkpoint", str(tmp_path / "nowhere")], ["--top-p", "1.5"]):
        result = run_textlstm("generate", "--prompt", "a", *args)
        assert result.returncode != 0 and result.stdout == ""
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("command_name", ["generate", "chat"])
def test_every_sampling_setting_is_an_option_with_the_dataclass_default(command_name):
    import dataclasses

    from textlstm.cli.main import cli
    from textlstm.config import SamplingOptions

    command = cli.commands[command_name]
    options = {param.name: param for param in command.params}
    for field in dataclasses.fields(SamplingOptions):
        option = options[field.name]
        assert option.opts == ["--" + field.name.replace("_", "-")]
        assert option.default == field.default, field.name
        assert option.help == field.metadata["help"]


# --- --prompt-file --------------------------------------------------------------------------------


def test_prompt_file_is_the_prompt(run_cli, checkpoint, tmp_path):
    prompt = "the lazy dog\njumps over the quick brown fox. " * 20
    (tmp_path / "prompt.txt").write_text(prompt, encoding="utf-8")
    args = ("generate", "--max-tokens", "20", "--seed", "4")
    from_file = run_cli(*args, "--prompt-file", tmp_path / "prompt.txt")
    assert from_file.code == 0, from_file.err
    assert from_file.out == run_cli(*args, "--prompt", prompt).out
    assert from_file.out.startswith(prompt) and len(from_file.out) == len(prompt) + 20 + 1


@pytest.mark.parametrize(
    "make, args, expected",
    [
        (None, ["--prompt-file", "missing.txt"], "missing.txt"),
        (lambda d: (d / "binary.txt").write_bytes(b"the \xff\xfe"), ["--prompt-file", "binary.txt"], "not UTF-8"),
        (lambda d: (d / "folder").mkdir(), ["--prompt-file", "folder"], "folder"),
        (lambda d: (d / "p.txt").write_text("a"), ["--prompt-file", "p.txt", "--prompt", "b"], "not both"),
    ],
    ids=["missing", "not utf-8", "a folder", "with --prompt"],
)
def test_bad_prompt_file_is_one_line(run_cli, checkpoint, tmp_path, make, args, expected):
    if make:
        make(tmp_path)
    result = run_cli("generate", *args)
    one_line_error(result)
    assert expected in result.err


# --- --interactive: choosing the next token -------------------------------------------------------


def choices_shown(messages: str) -> list[list[tuple[float, str]]]:
    """Each step's list of (probability in %, token as shown), from the lines `  N   P%  'token'`."""
    steps = []
    for line in messages.splitlines():
        if line.startswith("text: "):
            steps.append([])
        elif line[:4].strip().isdigit():
            number, percent, token = line.split(maxsplit=2)
            assert int(number) == len(steps[-1]) + 1
            steps[-1].append((float(percent.rstrip("%")), token))
    return steps


def test_interactive_shows_the_likeliest_tokens_and_takes_a_choice_or_text(run_cli, checkpoint, monkeypatch):
    from textlstm.config import SamplingOptions
    from textlstm.generation.generator import load
    from textlstm.generation.sampler import RowSettings, filtered_scores

    monkeypatch.setattr(sys, "stdin", io.StringIO("2\n\nfox\n\\7\n"))
    result = run_cli("generate", "--interactive", "--prompt", "the ", "--choices", "5", "--temperature", "0.7")
    assert result.code == 0, result.err
    steps = choices_shown(result.err)
    assert len(steps) == 5 and all(len(step) == 5 for step in steps)  # one menu per input line, and the last

    lm = load(checkpoint)
    stepper = lm.new_stepper(lm.tokenizer.encode("the "))
    scores = filtered_scores(stepper.logits[None], RowSettings.of([SamplingOptions(temperature=0.7)]))[0]
    probs = torch.softmax(scores, dim=-1)
    top = torch.topk(probs, 5)
    expected = [
        (round(100 * p, 1), repr(lm.tokenizer.decode([t]))) for p, t in zip(top.values.tolist(), top.indices.tolist())
    ]
    assert steps[0] == expected

    second, first_of_next = steps[0][1][1], steps[1][0][1]
    text = (
        "the " + literal_eval(second) + literal_eval(first_of_next) + "fox" + "7"
    )  # 2, Enter (the likeliest), text, \-escaped text
    assert result.out == text + "\n"
    assert [p for p, _ in steps[0]] == sorted((p for p, _ in steps[0]), reverse=True)


def test_interactive_bad_choice_is_a_message_and_end_of_text_ends(run_cli, checkpoint, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "stdin", io.StringIO("99\n1\n"))
    result = run_cli("generate", "--interactive", "--prompt", "the ", "--choices", "3", "--seed", "1")
    assert result.code == 0 and "choose 1 to 3" in result.err
    assert len(choices_shown(result.err)) == 3 and len(result.out) == len("the ") + 1 + 1

    always_ends = write_tiny_checkpoint(tmp_path / "ends", bias={"<|endoftext|>": 100})
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n1\n1\n"))
    result = run_cli("generate", "--interactive", "--prompt", "the ", "--checkpoint", always_ends)
    assert result.code == 0 and result.out == "the \n"
    assert choices_shown(result.err)[0][0] == (100.0, "<end of text>") and len(choices_shown(result.err)) == 1


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--interactive", "--num-samples", "2"], "--num-samples"),
        (["--interactive", "--prompt", "-"], "--prompt-file"),
        (["--choices", "3"], "--choices needs --interactive"),
    ],
)
def test_interactive_conflicts_are_one_line(run_cli, checkpoint, args, expected):
    result = run_cli("generate", *args)
    one_line_error(result)
    assert expected in result.err
