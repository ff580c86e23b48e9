"""Every command, fed wrong types, out-of-range values, missing files and conflicting options,
answers with one `error:` line on stderr and a non-zero exit, never a traceback."""

import pytest

from conftest import TINY_MODEL

CASES = [
    # train
    ("train", ["--hidden-size", "abc"], "--hidden-size"),
    ("train", ["--embedding-size", "-1"], "--embedding-size"),
    ("train", ["--batch-size", "0"], "--batch-size"),
    ("train", ["--lr", "0"], "--lr"),
    ("train", ["--lr", "fast"], "--lr"),
    ("train", ["--dropout", "-0.1"], "--dropout"),
    ("train", ["--tokenizer", "sentencepiece"], "--tokenizer"),
    ("train", ["--vocab-size", "3"], "--vocab-size"),
    ("train", ["--batching", "random"], "--batching"),
    ("train", ["--max-steps", "0"], "--max-steps"),
    ("train", ["--epochs", "1.5"], "--epochs"),
    ("train", ["--device", "tpu"], "device"),
    ("train", ["--dataset", "missing/folder/corpus.txt"], "no such file or folder"),
    ("train", ["--resume", "{run}", "--output", "elsewhere"], "--output cannot change when resuming"),
    ("train", ["--resume", "{run}", "--tokenizer", "bpe"], "--tokenizer cannot change when resuming"),
    ("train", ["--output", "{run}"], "already holds a textlstm run"),
    # generate
    ("generate", ["--temperature", "-1"], "--temperature"),
    ("generate", ["--temperature", "hot"], "--temperature"),
    ("generate", ["--top-p", "0"], "--top-p"),
    ("generate", ["--top-p", "1.5"], "--top-p"),
    ("generate", ["--top-k", "-3"], "--top-k"),
    ("generate", ["--max-tokens", "0"], "--max-tokens"),
    ("generate", ["--num-samples", "0"], "--num-samples"),
    ("generate", ["--repetition-penalty", "0"], "--repetition-penalty"),
    ("generate", ["--seed", "x"], "--seed"),
    ("generate", ["--checkpoint", "no/such/folder"], "no/such/folder"),
    ("generate", ["--checkpoint", "{run}", "--device", "tpu"], "device"),
    # chat
    ("chat", ["--temperature", "-0.5"], "--temperature"),
    ("chat", ["--max-tokens", "-1"], "--max-tokens"),
    ("chat", ["--checkpoint", "no/such/folder"], "no/such/folder"),
    # eval
    ("eval", ["--batch-size", "0"], "--batch-size"),
    ("eval", ["--seq-len", "many"], "--seq-len"),
    ("eval", ["--checkpoint", "no/such/folder"], "no/such/folder"),
    ("eval", ["--checkpoint", "{run}", "--dataset", "missing.txt"], "no such file or folder"),
    ("eval", ["--checkpoint", "{run}", "--split", "nosuchsplit"], "nosuchsplit"),
    # info, runs, plot; train --config and --init-from
    ("info", ["no/such/folder"], "no run no/such/folder"),
    ("info", [], "no checkpoint found"),
    ("runs", ["--root", "no/such/folder"], "no run folder no/such/folder"),
    ("plot", ["no/such/run"], "no run no/such/run"),
    ("plot", [], "Missing argument"),
    ("train", ["--config", "missing.toml"], "--config"),
    ("train", ["--init-from", "no/such/folder"], "no such checkpoint folder"),
    ("train", ["--init-from", "{run}", "--layers", "5"], "--layers 5 (the parent has 2)"),
    # the group
    ("frobnicate", [], "No such command"),
    ("train", ["--no-such-option"], "No such option"),
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny trained checkpoint shared by the cases that need one."""
    import os

    from conftest import TINYSHAKESPEARE
    from textlstm.cli.main import main

    if not TINYSHAKESPEARE.is_file():
        pytest.skip("shared corpus missing")
    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "small.txt"
    corpus.write_text(TINYSHAKESPEARE.read_text()[:20_000])
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        main(["train", "--dataset", str(corpus), *TINY_MODEL, "--max-steps", "2", "--output", str(folder / "run")])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    finally:
        os.chdir(cwd)
    return folder / "run"


@pytest.mark.parametrize("command,args,expected", CASES, ids=[f"{c} {' '.join(a)}" for c, a, _ in CASES])
def test_bad_command_line_gives_one_error_line(run_cli, trained_run, command, args, expected):
    args = [a.replace("{run}", str(trained_run)) for a in args]
    result = run_cli(command, *args)
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert expected in lines[0]
