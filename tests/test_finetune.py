"""`textlstm train --init-from CHECKPOINT`: fine-tuning a trained model on new text."""

import json

from conftest import TINY_MODEL

FAST = (
    "--lr",
    "0.03",
    "--warmup-steps",
    "5",
    "--dropout",
    "0",
    "--recurrent-dropout",
    "0",
    "--batch-size",
    "8",
    "--seq-len",
    "32",
)
SHAPE = ("--embedding-size", "32", "--hidden-size", "32", "--layers", "1")


def last_valid_loss(folder) -> float:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])["valid_loss"]


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_fine_tuning_beats_a_fresh_model_on_new_text(run_cli, shakespeare_text, tmp_path):
    first = write(tmp_path / "first.txt", shakespeare_text[:40_000])
    second = write(tmp_path / "second.txt", shakespeare_text[600_000:640_000])
    parent = tmp_path / "parent"
    # 200 steps take this model past the plateau at the unigram entropy (3.3 nats) to about 2.4
    result = run_cli(
        "train", "--dataset", first, *SHAPE, *FAST, "--max-steps", "200", "--eval-every", "200", "--output", parent
    )
    assert result.code == 0, result.err

    common = ("--dataset", second, *FAST, "--max-steps", "50", "--eval-every", "50")
    tuned = run_cli("train", *common, "--init-from", parent, "--output", tmp_path / "tuned")
    assert tuned.code == 0, tuned.err
    fresh = run_cli("train", *common, *SHAPE, "--output", tmp_path / "fresh")
    assert fresh.code == 0, fresh.err
    # measured: about 2.35 against 2.80
    assert last_valid_loss(tmp_path / "tuned") < last_valid_loss(tmp_path / "fresh") - 0.2

    config = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert config["train"]["init_from"] == str(parent.resolve())
    assert config["model"] == json.loads((parent / "config.json").read_text())["model"] | {
        "dropout": 0.0,
        "recurrent_dropout": 0.0,
    }
    assert (tmp_path / "tuned" / "tokenizer.json").read_text() == (parent / "tokenizer.json").read_text()
    # a fresh optimizer and schedule: the new run counts its own steps from 0, the parent is untouched
    records = [json.loads(line) for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [50]
    assert len((parent / "metrics.jsonl").read_text().splitlines()) == 1
    info = json.loads(run_cli("info", tmp_path / "tuned", "--json").out)
    assert info["parent"] == str(parent.resolve())


def test_a_word_model_says_how_many_new_words_it_reads_as_unknown(run_cli, tmp_path):
    known = "the cat sat on the mat .\n"
    write(tmp_path / "old" / "train.txt", known * 300)
    write(tmp_path / "old" / "validation.txt", known * 20)
    write(tmp_path / "new" / "train.txt", "the zebra sat on the mat .\n" * 7 + known * 300)
    write(tmp_path / "new" / "validation.txt", known * 20)
    parent = tmp_path / "parent"
    small = ("--batch-size", "2", "--seq-len", "16", "--max-steps", "2", "--eval-every", "2")
    assert (
        run_cli(
            "train", "--dataset", tmp_path / "old", "--tokenizer", "word", *TINY_MODEL[:6], *small, "--output", parent
        ).code
        == 0
    )

    result = run_cli(
        "train", "--dataset", tmp_path / "new", "--init-from", parent, *small, "--output", tmp_path / "tuned"
    )
    assert result.code == 0, result.err
    assert "7 words of the new text are not in the vocabulary (read as <|unk|>)" in result.err


def test_a_char_model_reads_unseen_characters_as_bytes(run_cli, tmp_path):
    parent = tmp_path / "parent"
    small = ("--batch-size", "2", "--seq-len", "16", "--max-steps", "2", "--eval-every", "2")
    write(tmp_path / "old.txt", "plain ascii text only, over and over.\n" * 200)
    assert run_cli("train", "--dataset", tmp_path / "old.txt", *TINY_MODEL[:6], *small, "--output", parent).code == 0
    # 5 two-byte and 3 three-byte characters the parent never saw, all in the training 90%
    write(tmp_path / "new.txt", "tôt " * 5 + "日本語 " + "plain ascii text only, over and over.\n" * 200)

    result = run_cli(
        "train", "--dataset", tmp_path / "new.txt", "--init-from", parent, *small, "--output", tmp_path / "tuned"
    )
    assert result.code == 0, result.err
    assert "8 characters of the new text are not in the vocabulary (read as UTF-8 bytes)" in result.err


def test_shape_options_that_contradict_the_parent_are_refused(run_cli, tmp_path):
    from conftest import write_tiny_checkpoint

    parent = write_tiny_checkpoint(tmp_path / "parent")  # hidden 32, char tokenizer
    write(tmp_path / "new.txt", "some new text\n" * 100)
    result = run_cli(
        "train", "--dataset", tmp_path / "new.txt", "--init-from", parent, "--hidden-size", "64", "--tokenizer", "bpe"
    )
    assert result.code == 2
    assert result.err.count("\n") == 1
    assert (
        "--tokenizer bpe (the parent has char)" in result.err and "--hidden-size 64 (the parent has 32)" in result.err
    )
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())

    missing = run_cli("train", "--dataset", tmp_path / "new.txt", "--init-from", tmp_path / "nowhere")
    assert missing.code == 1 and "no such checkpoint folder" in missing.err

    resumed = run_cli("train", "--resume", parent, "--init-from", parent)
    assert resumed.code == 2 and "--init-from cannot change when resuming" in resumed.err


def test_resume_accepts_the_fine_tuning_command_with_a_relative_init_from(run_cli, tmp_path):
    """config.json holds the parent's resolved path; the command typed again names it as it was typed."""
    from conftest import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "parent")
    write(tmp_path / "new.txt", "some new text\n" * 100)
    small = ("--batch-size", "2", "--seq-len", "16", "--eval-every", "2")
    command = (
        "train",
        "--dataset",
        "new.txt",
        "--init-from",
        "./parent",
        *small,
        "--output",
        "tuned",
    )  # relative to the cwd, tmp_path
    assert run_cli(*command, "--max-steps", "2").code == 0
    result = run_cli(*command, "--max-steps", "4", "--resume", "tuned")
    assert result.code == 0, result.err
    assert [json.loads(line)["step"] for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()] == [
        2,
        4,
    ]
