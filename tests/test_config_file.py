"""`textlstm train --config FILE.toml` and the recipes in recipes/."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO, TINY_MODEL
from textlstm.cli.train import given_options, run_config, train

RECIPES = REPO / "recipes"


def config_of(*args):
    """The RunConfig `textlstm train ARGS` would train, without training."""
    ctx = train.make_context("train", [str(a) for a in args])
    return run_config(ctx.params, given_options(ctx))


def test_the_default_recipe_is_the_defaults_written_out():
    assert config_of("--config", RECIPES / "default.toml") == config_of()


def test_the_ten_minute_recipe_is_the_recorded_run():
    recipes = REPO / "benchmarks" / "experiments" / "e2026_11_25_tinyshakespeare_recipes"
    results = (recipes / "tinyshakespeare_10min.jsonl").read_text().splitlines()
    record = next(json.loads(line) for line in results if json.loads(line)["name"] == "dropout01")
    # The run: the ablations experiment's command with the defaults of its day (auto: char and weight
    # decay 0.01; AR and TAR off; the shape 2 x 256, embedding 64, evaluated every 500 steps; batch 16, lr 0.004).
    recorded = config_of(
        "--dataset",
        record["dataset"],
        "--max-minutes",
        record["minutes"],
        "--threads",
        "1",
        *shlex.split(record["options"]),
        "--tokenizer",
        "char",
        "--weight-decay",
        "0.01",
        "--ar",
        "0",
        "--tar",
        "0",
        "--embedding-size",
        "64",
        "--hidden-size",
        "256",
        "--layers",
        "2",
        "--eval-every",
        "500",
        "--batch-size",
        "16",
        "--lr",
        "0.004",
    )
    assert config_of("--config", RECIPES / "tinyshakespeare-10min.toml") == recorded


def test_the_hour_recipe_reads():
    config = config_of("--config", RECIPES / "tinyshakespeare-60min.toml")
    assert (config.model.hidden_size, config.train.max_minutes, config.train.threads) == (512, 60, 1)
    assert (config.train.ar, config.train.tar) == (0.0, 0.0)  # as the recorded hour ran


@pytest.mark.parametrize("recipe", sorted(path.name for path in RECIPES.glob("*.toml")))
def test_every_recipe_trains_from_a_fresh_clone_with_no_shared_folder_beside_it(recipe, tmp_path, request):
    """The recipe's own data (a card's download comes from the seeded cache), a tiny model, two steps, run by
    the textlstm of a copy of the repository that has nothing beside it."""
    dataset = tomllib.loads((RECIPES / recipe).read_text())["data"].get("dataset")
    if dataset == "tinyshakespeare":
        download = request.getfixturevalue("cached_tinyshakespeare")
    clone = tmp_path / "clone"
    for part in ("textlstm", "recipes"):
        shutil.copytree(REPO / part, clone / part, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (tmp_path / "shared").exists()
    train_with_the_clone = (
        "import sys, textlstm; from textlstm.cli.main import main; "
        "assert textlstm.__file__.startswith(sys.argv[1]), textlstm.__file__; main(sys.argv[2:])"
    )
    options = ["--max-steps", "2", *TINY_MODEL, "--eval-tokens", "4096", "--output", "run"]

    result = subprocess.run(
        [sys.executable, "-c", train_with_the_clone, str(clone), "train", "--config", f"recipes/{recipe}", *options],
        cwd=clone,
        env={**os.environ, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads((clone / "run" / "config.json").read_text())["data"]["dataset"] == dataset
    if dataset == "tinyshakespeare":
        assert f"corpus: {download}" in result.stderr + result.stdout


def test_file_options_in_tables_or_not_dashes_or_underscores_and_the_command_line_wins(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'tokenizer = "word"\nhidden_size = 48\n'
        '[model]\nembedding-size = 24\nlayers = 1\noutput-layer = "adaptive"\nadaptive-cutoffs = [100, 500]\n'
        "[train]\nlr = 0.01\nmax-steps = 7\n"
    )
    config = config_of("--config", path, "--layers", "3", "--lr", "0.02")
    assert (config.model.hidden_size, config.model.embedding_size, config.model.layers) == (48, 24, 3)
    assert config.model.adaptive_cutoffs == [100, 500] and config.data.tokenizer == "word"
    assert config.train.lr == 0.02 and config.train.max_steps == 7
    assert config_of("--lr", "0.02", "--config", path).train.lr == 0.02  # wherever --config stands


@pytest.mark.parametrize(
    "text,expected",
    [
        ("hiden-size = 3\n", "unknown option 'hiden-size'"),
        ("[optimizer]\nlr = 0.1\n", "unknown table [optimizer]"),
        ("hidden-size = \n", "is not a valid TOML file"),
        ('hidden-size = "big"\n', "--hidden-size"),
        ("layers = 0\n", "--layers"),
        ("lr = 0.1\n[train]\nlr = 0.2\n", "option 'lr' is given twice"),
    ],
)
def test_a_bad_file_is_one_error_line_naming_the_problem(run_cli, tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    result = run_cli("train", "--config", path)
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("error: ") and expected in result.err, result.err
    assert not (tmp_path / "checkpoints").exists()


def test_training_from_a_config_file(run_cli, small_corpus, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        f'dataset = "{small_corpus}"\n'
        "[model]\nembedding-size = 16\nhidden-size = 24\nlayers = 1\n"
        "[train]\nbatch-size = 4\nseq-len = 16\nmax-steps = 3\neval-every = 3\n"
    )
    result = run_cli("train", "--config", path, "--output", tmp_path / "run")
    assert result.code == 0, result.err
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["hidden_size"] == 24 and saved["train"]["max_steps"] == 3
    assert saved["data"]["dataset"] == str(small_corpus)


def test_a_config_written_before_ar_and_tar_existed_reads_with_them_off():
    from textlstm.config import ModelConfig, RunConfig, TrainConfig

    raw = json.loads(RunConfig(model=ModelConfig(vocab_size=10), train=TrainConfig(max_steps=3)).to_json())
    del raw["train"]["ar"], raw["train"]["tar"]
    old = RunConfig.from_json(json.dumps(raw))
    assert (old.train.ar, old.train.tar) == (0.0, 0.0) and old.train.max_steps == 3
    assert (TrainConfig().ar, TrainConfig().tar) == (2.0, 1.0)
