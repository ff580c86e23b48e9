"""--device and --precision: one declaration (textlstm/config.py) for every command that runs a model."""

from __future__ import annotations

import pytest

from conftest import write_tiny_checkpoint
from textlstm.cli.main import cli
from textlstm.config import TrainConfig
from textlstm.generation.generator import load

COMMANDS_THAT_RUN_A_MODEL = {"train", "eval", "generate", "chat", "serve"}


def declaration(param) -> tuple:
    """What a user sees of an option: its default, its values (if a choice) and its help."""
    return param.default, tuple(getattr(param.type, "choices", ())), param.help


def options_named(name: str) -> dict:
    return {
        command_name: param
        for command_name, command in cli.commands.items()
        for param in command.params
        if param.name == name
    }


@pytest.mark.parametrize("name", ["device", "precision"])
def test_every_command_declares_the_option_alike(name):
    options = options_named(name)
    assert set(options) >= COMMANDS_THAT_RUN_A_MODEL
    declarations = {command: declaration(param) for command, param in options.items()}
    assert len(set(declarations.values())) == 1, declarations
    assert next(iter(declarations.values()))[0] == "auto" == getattr(TrainConfig(), name)


def test_precision_offers_the_same_values_everywhere():
    for command, param in options_named("precision").items():
        assert tuple(param.type.choices) == ("auto", "float32", "bfloat16", "float16"), command


@pytest.mark.parametrize("precision", ["auto", "float32", "bfloat16", "float16"])
def test_generate_runs_in_every_precision_on_the_cpu(run_cli, tmp_path, precision):
    checkpoint = write_tiny_checkpoint(tmp_path / "run", allow_newline=True)
    result = run_cli(
        "generate", "--checkpoint", checkpoint, "--prompt", "the ", "--max-tokens", "10", "--precision", precision
    )
    assert result.code == 0, result.err
    assert len(result.out) == len("the ") + 10 + 1


def test_auto_runs_int8_weights_on_the_cpu_in_float32(tmp_path):
    """--quantize int8 with the defaults: int8 weights are quantized float32 ones, run by CPU kernels."""
    lm = load(write_tiny_checkpoint(tmp_path / "run"), device="auto", precision="auto", quantize="int8")
    assert lm.device.type == "cpu"
