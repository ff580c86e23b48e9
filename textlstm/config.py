"""Settings as dataclasses, checked on creation: a run's (saved as `config.json`) and sampling's.

The sampling settings carry their help text and allowed range, so the commands that take them
(generate, chat) derive their options from the dataclass instead of repeating it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from textlstm import __version__
from textlstm.errors import TextlstmError
from textlstm.turns import TurnFormat, turn_format

# The length of a run given no --epochs, --max-steps or --max-minutes: `textlstm train` with no options
# ends within 5 minutes (data preparation and the final evaluation included), on any machine.
DEFAULT_MINUTES = 4.5

# The value of a setting that training chooses itself once the data is known (textlstm/training/auto_settings.py).
# The tokenizer says so by name; dropout, recurrent_dropout and weight_decay by None.
AUTO = "auto"

# Training settings whose default changed after checkpoints without them were written: absent from a
# config.json, they mean what the version that wrote it did (AR/TAR were off before they were on).
ABSENT_TRAIN_SETTINGS = {"ar": 0.0, "tar": 0.0}

# Bump when a checkpoint written by this version cannot be read by an older one, or the reverse.
CHECKPOINT_FORMAT = 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise TextlstmError(message)


@dataclass
class ModelConfig:
    vocab_size: int = 0  # 0: taken from the tokenizer when training starts
    # The defaults are the default run's (`textlstm train`: the built-in corpus, 4.5 minutes on a
    # 2-core CPU); the sweep behind them is in benchmarks/QUALITY.md, "The default run".
    embedding_size: int = 64
    hidden_size: int = 256
    layers: int = 2
    # None: auto, chosen from the corpus and the budget when training starts (auto_settings.regularization_for).
    # A model built from a config that still says None (outside training) has no dropout.
    dropout: float | None = None
    recurrent_dropout: float | None = None
    embedding_dropout: float = 0.0  # drops whole embedding rows (tokens) per batch in training
    tie_weights: bool = False
    output_layer: str = "full"  # "full" softmax, or "adaptive" softmax (frequency clusters; for big word vocabularies)
    adaptive_cutoffs: list[int] | None = None  # None: derived from vocab_size (see model.default_cutoffs)
    # The id of <0x00> when the vocabulary holds a char tokenizer's 256 byte-fallback tokens (set from
    # the tokenizer): they then share one softmax output (textlstm/model/byte_softmax.py). None: a plain softmax.
    byte_fallback_start: int | None = None
    cell: str = "lstm"  # "lstm", or "mogrifier": input and hidden state gate each other first (textlstm/model/mogrifier.py)
    mogrifier_rounds: int = 5  # the Mogrifier's rounds (the paper's best setting); with cell "lstm", unused

    def __post_init__(self):
        _check(self.cell in ("lstm", "mogrifier"), f"cell must be lstm or mogrifier, got {self.cell!r}")
        _check(self.mogrifier_rounds >= 0, f"mogrifier-rounds must not be negative, got {self.mogrifier_rounds}")
        _check(self.vocab_size >= 0, f"vocab-size must not be negative, got {self.vocab_size}")
        _check(self.output_layer in ("full", "adaptive"), f"output-layer must be full or adaptive, got {self.output_layer!r}")
        _check(
            not (self.tie_weights and self.output_layer == "adaptive"),
            "--tie-weights does not work with --output-layer adaptive (the adaptive softmax has no single output matrix to tie)",
        )
        if self.byte_fallback_start is not None:
            _check(self.output_layer == "full" and not self.tie_weights,
                   "byte-fallback-start needs --output-layer full without --tie-weights")
            _check(0 <= self.byte_fallback_start and (self.vocab_size == 0 or self.byte_fallback_start + 256 <= self.vocab_size),
                   f"byte-fallback-start {self.byte_fallback_start} leaves no room for 256 byte tokens in a vocabulary of {self.vocab_size}")
        if self.adaptive_cutoffs is not None:
            _check(self.output_layer == "adaptive", "--adaptive-cutoffs needs --output-layer adaptive")
            cutoffs = list(self.adaptive_cutoffs)
            _check(
                cutoffs == sorted(set(cutoffs)) and all(c >= 1 for c in cutoffs) and cutoffs,
                f"adaptive-cutoffs must be increasing positive integers, got {cutoffs}",
            )
            _check(
                self.vocab_size == 0 or cutoffs[-1] < self.vocab_size,
                f"adaptive-cutoffs must be below the vocabulary size ({self.vocab_size}), got {cutoffs}",
            )
        for name in ("embedding_size", "hidden_size", "layers"):
            _check(getattr(self, name) >= 1, f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("dropout", "recurrent_dropout", "embedding_dropout"):
            value = getattr(self, name)
            _check(value is None or 0 <= value < 1, f"{name.replace('_', '-')} must be in [0, 1), got {value}")


@dataclass
class DataConfig:
    dataset: str | None = None  # None: the built-in corpus
    dataset_config: str | None = None
    split: str = "train"
    valid_split: str | None = None
    text_column: str | None = None
    tokenizer: str = AUTO  # char, word, bpe, or auto: chosen from the corpus when training starts (auto_settings.choose_tokenizer)
    vocab_size: int | None = None  # word and bpe only
    batching: str = "stream"  # "stream" (truncated BPTT) or "documents" (padded, masked)
    turns: TurnFormat | None = None  # how the corpus writes a conversation: its card's [chat] table
    streaming: bool = False  # read the corpus as a stream, tokenized on the fly (textlstm/data/streaming.py)

    def __post_init__(self):
        if isinstance(self.turns, dict):  # as read back from config.json
            self.turns = turn_format(self.turns, "the data.turns of config.json")
        _check(self.tokenizer in ("char", "word", "bpe", AUTO), f"tokenizer must be char, word, bpe or auto, got {self.tokenizer!r}")
        _check(self.batching in ("stream", "documents"), f"batching must be stream or documents, got {self.batching!r}")
        _check(self.vocab_size is None or self.vocab_size >= 8, f"vocab-size must be at least 8, got {self.vocab_size}")
        _check(not (self.streaming and self.batching == "documents"), "--streaming trains with --batching stream only")


@dataclass
class TrainConfig:
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 4e-3
    # None: auto, chosen with the dropouts when training starts (auto_settings.regularization_for);
    # an optimizer built from a config that still says None (outside training) has no weight decay.
    weight_decay: float | None = None
    schedule: str = "cosine"  # "cosine" (warmup, then cosine decay to min_lr_ratio * lr) or "constant"
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    clip: float = 1.0
    ar: float = 2.0  # activation regularization: ar * mean(h^2) of the last LSTM layer's outputs after dropout
    tar: float = 1.0  # temporal activation regularization: tar * mean((h_t - h_{t-1})^2), before dropout
    ema: float = 0.0  # decay of an average of the weights that evaluations and saved weights use; 0: off
    # The run stops at whichever of these comes first; with none of them given, after DEFAULT_MINUTES.
    epochs: int | None = None
    max_steps: int | None = None
    max_minutes: float | None = None  # training time; the cosine schedule then follows the clock
    eval_every: int = 500
    save_every: int | None = None  # also save the resume state every N steps; None: at evaluations only
    save_every_minutes: float = 10.0  # and whenever this much time has passed since the last save; 0: off
    eval_tokens: int = 1_048_576  # validation tokens scored by each evaluation during training
    patience: int = 3  # stop after this many evaluations without improvement; 0: never
    seed: int = 1337
    device: str = "auto"
    threads: int | None = None  # CPU threads; None: OMP_NUM_THREADS if set, else threads.default_threads for the shape
    # "bfloat16": the forward pass under autocast, weights and optimizer in float32; "auto": bfloat16
    # where the hardware does it natively, else float32 (precision.training_precision)
    precision: str = "auto"
    init_from: str | None = None  # the checkpoint whose weights and tokenizer this run started from (its parent)

    def __post_init__(self):
        for name in ("batch_size", "seq_len", "eval_every", "eval_tokens"):
            _check(getattr(self, name) >= 1, f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("epochs", "max_steps"):
            value = getattr(self, name)
            _check(value is None or value >= 1, f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            self.max_minutes = DEFAULT_MINUTES
        _check(self.max_minutes is None or self.max_minutes > 0, f"max-minutes must be positive, got {self.max_minutes}")
        _check(self.lr > 0, f"lr must be positive, got {self.lr}")
        _check(self.weight_decay is None or self.weight_decay >= 0, f"weight-decay must not be negative, got {self.weight_decay}")
        _check(self.clip >= 0, f"clip must not be negative, got {self.clip}")
        _check(self.ar >= 0, f"ar must not be negative, got {self.ar}")
        _check(self.tar >= 0, f"tar must not be negative, got {self.tar}")
        _check(0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}")
        _check(self.warmup_steps >= 0, f"warmup-steps must not be negative, got {self.warmup_steps}")
        _check(self.save_every is None or self.save_every >= 1, f"save-every must be at least 1, got {self.save_every}")
        _check(self.save_every_minutes >= 0, f"save-every-minutes must not be negative, got {self.save_every_minutes}")
        _check(self.threads is None or self.threads >= 1, f"threads must be at least 1, got {self.threads}")
        _check(self.patience >= 0, f"patience must not be negative, got {self.patience}")
        _check(0 <= self.min_lr_ratio <= 1, f"min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got {self.schedule!r}")
        _check(self.precision in ("auto", "float32", "bfloat16"), f"precision must be auto, float32 or bfloat16, got {self.precision!r}")


@dataclass
class RunConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: str = __version__
    format: int = CHECKPOINT_FORMAT
    world_size: int = 1  # processes the run started with (torchrun); the batch's rows are split between them
    launch_id: str | None = None  # torchrun's id of the launch that started it: processes it restarts find the run by it

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            raw = json.loads(text)
            _check(isinstance(raw, dict), "config.json does not hold a JSON object")
            fmt = raw.get("format")
            _check(fmt == CHECKPOINT_FORMAT, f"checkpoint format {fmt} is not supported (this textlstm reads format {CHECKPOINT_FORMAT})")
            return cls(
                model=ModelConfig(**raw["model"]),
                data=DataConfig(**raw.get("data", {})),
                train=TrainConfig(**{**ABSENT_TRAIN_SETTINGS, **raw.get("train", {})}),
                version=raw.get("version", "unknown"),
                format=fmt,
                world_size=int(raw.get("world_size", 1)),
                launch_id=raw.get("launch_id"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise TextlstmError(f"config.json is not a valid textlstm config: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextlstmError(f"cannot read {path}: {error}") from None
        return cls.from_json(text)


@dataclass(frozen=True)
class Range:
    """The values a number setting may take; None is no bound on that side."""

    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False  # True: the minimum itself is not allowed
    max_open: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.minimum is None or (value > self.minimum if self.min_open else value >= self.minimum)
        below = self.maximum is None or (value < self.maximum if self.max_open else value <= self.maximum)
        return above and below

    def __str__(self) -> str:
        low, high = _number(self.minimum), _number(self.maximum)
        if self.maximum is None:
            return f"more than {low}" if self.min_open else f"{low} or more"
        if self.minimum is None:
            return f"less than {high}" if self.max_open else f"{high} or less"
        return f"in {'(' if self.min_open else '['}{low}, {high}{')' if self.max_open else ']'}"


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


def setting(default, metavar: str, help: str, range: Range | None = None):
    """A dataclass field with the name of its value, help text and range that its option shows."""
    return field(default=default, metadata={"metavar": metavar, "help": help, "range": range})


@dataclass(frozen=True)
class SamplingOptions:
    """How to pick tokens. temperature 0 is greedy; top_k 0 and top_p 1 switch those filters off."""

    temperature: float = setting(
        0.8,
        "T",
        "Randomness: below 1 sharpens the distribution, above 1 flattens it, 0 always takes the most likely token.",
        Range(0),
    )
    top_k: int = setting(0, "K", "Sample only among the K most likely tokens; 0 turns this off.", Range(0))
    top_p: float = setting(
        1.0,
        "P",
        "Nucleus sampling: sample only among the fewest most likely tokens whose probabilities add up to P; 1 turns this off.",
        Range(0, 1, min_open=True),
    )
    repetition_penalty: float = setting(
        1.0,
        "X",
        "Above 1 makes tokens already in the prompt or the output less likely (CTRL-style); 1 turns this off.",
        Range(0, min_open=True),
    )
    max_tokens: int = setting(500, "N", "Stop after this many new tokens.", Range(1))
    stop: tuple[str, ...] = setting(
        (), "TEXT", "End the output just before this text appears (repeatable). In bash, $'\\n\\n' is a blank line."
    )
    seed: int | None = setting(None, "N", "Random seed: the same seed gives the same text. Default: random.")

    def __post_init__(self):
        object.__setattr__(self, "stop", (self.stop,) if isinstance(self.stop, str) else tuple(self.stop))
        for option in dataclasses.fields(self):
            allowed, value = option.metadata["range"], getattr(self, option.name)
            _check(allowed is None or allowed.holds(value), f"{option.name.replace('_', '-')} must be {allowed}, got {value}")
        _check(all(self.stop), "a stop string must not be empty")
