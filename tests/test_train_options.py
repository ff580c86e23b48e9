"""`textlstm train`'s options, derived from the fields of ModelConfig, DataConfig and TrainConfig."""

import dataclasses

import click
import pytest

from textlstm.cli.options import flag, option_fields
from textlstm.cli.train import given_options, run_config, train
from textlstm.config import Choices, DataConfig, ModelConfig, Range, TrainConfig
from textlstm.errors import TextlstmError

SETTINGS = (DataConfig, ModelConfig, TrainConfig)

# The options of `textlstm train`, in the order its help lists them: data, model, training, then the run's folders
# and processes.
OPTIONS = """
    --config --dataset --dataset-config --split --valid-split --text-column --tokenizer --vocab-size --batching
    --streaming
    --embedding-size --hidden-size --layers --dropout --recurrent-dropout --embedding-dropout --cell --mogrifier-rounds
    --tie-weights --output-layer --adaptive-cutoffs
    --batch-size --seq-len --lr --weight-decay --schedule --warmup-steps --clip --ar --tar --ema --epochs --max-steps
    --max-minutes --eval-every --save-every --save-every-minutes --eval-tokens --patience --sample-every --log-to
    --seed --device --threads --precision
    --init-from --output --resume --overwrite --nproc --dist-timeout
""".split()


def help_records() -> dict[str, tuple[str, str]]:
    """First option string -> (the options and value as the help shows them, the help text with its
    [default; range])."""
    ctx = click.Context(train)
    return {param.opts[0]: param.get_help_record(ctx) for param in train.params if param.get_help_record(ctx)}


def test_the_help_lists_every_option_in_its_group():
    listed = [name for name in help_records() if name != "--help"]
    assert [name for name in listed if name in OPTIONS] == OPTIONS
    assert [name for name in listed if name not in OPTIONS] == []


@pytest.mark.parametrize(
    "option,shown,text",
    [
        (
            "--hidden-size",
            "--hidden-size [INT|auto]",
            "(0.2M-2.75M tokens; a larger one on such a device excepted).  [default: (auto)]",
        ),
        (
            "--embedding-size",
            "--embedding-size [INT|auto]",
            "planned with the hidden size (a quarter of it, at least 16).  [default: (auto)]",
        ),
        (
            "--eval-every",
            "--eval-every [INT|auto]",
            "take about 5% of the budget (4 to 40 of them); else 500.  [default: (auto)]",
        ),
        ("--vocab-size", "--vocab-size INTEGER RANGE", "--tokenizer auto chooses bpe).  [x>=8]"),
        ("--dropout", "--dropout [FLOAT|auto]", "once the data is prepared.  [default: (auto)]"),
        ("--weight-decay", "--weight-decay [FLOAT|auto]", "auto: chosen with the dropouts.  [default: (auto)]"),
        ("--embedding-dropout", "--embedding-dropout FLOAT RANGE", "0: off.  [default: 0.0; 0.0<=x<1.0]"),
        ("--lr", "--lr [FLOAT|auto]", "above, 0.004 x sqrt(batch / 16), at most 0.008.  [default: (auto)]"),
        ("--batch-size", "--batch-size [INT|auto]", "learns more in the budget.  [default: (auto)]"),
        ("--max-minutes", "--max-minutes FLOAT RANGE", "Default, with none of them given: 4.5 minutes.  [x>0]"),
        ("--tie-weights", "--tie-weights / --no-tie-weights", "output layer.  [default: no-tie-weights]"),
        ("--streaming", "--streaming", "Give --max-steps or --max-minutes, not --epochs."),
        (
            "--adaptive-cutoffs",
            "--adaptive-cutoffs TEXT",
            "e.g. 2000,10000. Default: 2000,10000 clipped to the vocabulary.",
        ),
        ("--split", "--split TEXT", "Split to train on.  [default: train]"),
        ("--seed", "--seed INTEGER", "[default: 1337]"),
        ("--init-from", "--init-from DIRECTORY", "or hf://USER/NAME[@REVISION] from the Hugging Face Hub."),
        (
            "--tokenizer",
            "--tokenizer [char|word|bpe|auto]",
            "The run prints why and its config records the one chosen.  [default: auto]",
        ),
        ("--cell", "--cell [lstm|mogrifier]", "Works with both --batching modes.  [default: lstm]"),
        (
            "--output-layer",
            "--output-layer [full|adaptive|auto]",
            "the run's config records the one used.  [default: auto]",
        ),
        ("--batching", "--batching [stream|documents]", "short independent texts.  [default: stream]"),
        ("--schedule", "--schedule [cosine|constant]", "or constant.  [default: cosine]"),
        ("--precision", "--precision [auto|float32|bfloat16|float16]", "with --quantize int8.  [default: auto]"),
        ("--sample-every", "--sample-every INTEGER RANGE", "in the run folder. 0: off.  [default: 0; x>=0]"),
        ("--log-to", "--log-to [none|tensorboard]", "none: metrics.jsonl only.  [default: none]"),
    ],
)
def test_an_option_shows_its_value_help_default_and_range(option, shown, text):
    record = help_records()[option]
    assert record[0] == shown
    assert record[1].endswith(text), record[1]


def test_every_field_is_declared_a_setting_or_internal():
    for settings in SETTINGS:
        for field in dataclasses.fields(settings):
            assert "help" in field.metadata or field.metadata.get("internal"), f"{settings.__name__}.{field.name}"


def test_every_setting_a_user_may_set_has_exactly_one_option_with_its_default():
    params = [param for param in train.params if isinstance(param, click.Option)]
    for settings in SETTINGS:
        for field in option_fields(settings):
            matching = [param for param in params if param.name == field.name]
            assert len(matching) == 1, f"{settings.__name__}.{field.name} has {len(matching)} options"
            assert matching[0].opts == [flag(field.name)]
            assert matching[0].default == field.default, field.name
    internal = {
        field.name for settings in SETTINGS for field in dataclasses.fields(settings) if field.metadata.get("internal")
    }
    options = {field.name for settings in SETTINGS for field in option_fields(settings)}
    assert {param.name for param in params} & (
        internal - options
    ) == set()  # vocab_size: data's is an option, model's not


def refused_values(allowed) -> list:
    """Values just outside `allowed`."""
    if isinstance(allowed, Choices):
        return ["nonsense"]
    step = (
        1 if all(isinstance(bound, int) for bound in (allowed.minimum, allowed.maximum) if bound is not None) else 0.5
    )
    values = []
    if allowed.minimum is not None:
        values.append(allowed.minimum if allowed.min_open else allowed.minimum - step)
    if allowed.maximum is not None:
        values.append(allowed.maximum if allowed.max_open else allowed.maximum + step)
    return values


def test_the_option_and_the_dataclass_refuse_the_same_values():
    """One declaration drives both: what the option refuses, a Python caller is refused too."""
    options = {param.name: param for param in train.params}
    checked = 0
    for settings in SETTINGS:
        for field in option_fields(settings):
            allowed = field.metadata.get("allowed")
            if allowed is None:
                continue
            assert isinstance(allowed, (Range, Choices))
            for value in refused_values(allowed):
                with pytest.raises(click.BadParameter):
                    options[field.name].type.convert(str(value), options[field.name], None)
                with pytest.raises(TextlstmError, match=field.name.replace("_", "-")):
                    settings(**{field.name: value})
                checked += 1
    assert checked >= 25


def config_of(*args):
    ctx = train.make_context("train", [str(a) for a in args])
    return run_config(ctx.params, given_options(ctx))


def test_auto_cutoffs_and_flags_reach_the_run_config():
    config = config_of(
        "--output-layer",
        "adaptive",
        "--adaptive-cutoffs",
        "100,500",
        "--dropout",
        "auto",
        "--weight-decay",
        "0.02",
        "--streaming",
        "--no-tie-weights",
        "--tokenizer",
        "word",
    )
    assert config.model.adaptive_cutoffs == [100, 500] and config.model.dropout is None
    assert config.train.weight_decay == 0.02 and config.data.streaming and not config.model.tie_weights
    assert config_of("--tie-weights").model.tie_weights
    assert config_of() == config_of("--dropout", "auto", "--tokenizer", "auto")


def test_bad_cutoffs_are_one_error_line(run_cli):
    result = run_cli("train", "--output-layer", "adaptive", "--adaptive-cutoffs", "100,x")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "--adaptive-cutoffs" in result.err and "expected comma-separated integers" in result.err, result.err
