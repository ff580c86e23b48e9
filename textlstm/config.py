"""Settings as dataclasses, checked on creation: a run's (saved as `config.json`), sampling's, the
device and precision a model runs in, and the server's.

Each setting carries its help text and allowed values (`setting`), so the commands that take them
(train; generate and chat; eval; serve) derive their options from the dataclass instead of repeating
it (textlstm/cli/options.py), and the check on creation applies the same rule the option does.
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

# The time budget of a run given no --epochs, --max-steps or --max-minutes. Like any budget it covers choosing the
# tokenizer, the timing that plans the run and training with its evaluations; reading and tokenizing the corpus,
# and a last evaluation when the clock stops the run between evaluations, come on top.
DEFAULT_MINUTES = 4.5

# The value of a setting that training chooses itself once the data is known (textlstm/training/auto_settings.py).
# The tokenizer says so by name; the number settings that take auto (the model's sizes, the dropouts, the batch,
# the learning rate, weight decay, eval_every, patience) by None.
AUTO = "auto"

# Training settings whose default changed after checkpoints without them were written: absent from a
# config.json, they mean what the version that wrote it did (AR/TAR were off before they were on).
ABSENT_TRAIN_SETTINGS = {"ar": 0.0, "tar": 0.0}

# Bump when a checkpoint written by this version cannot be read by an older one, or the reverse.
CHECKPOINT_FORMAT = 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise TextlstmError(message)


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

    def requirement(self) -> str:
        """What a value outside the range is told: "must not be negative", "must be in [0, 1)"..."""
        low, high = _number(self.minimum), _number(self.maximum)
        if self.maximum is None:
            if self.minimum == 0:
                return "must be positive" if self.min_open else "must not be negative"
            return f"must be more than {low}" if self.min_open else f"must be at least {low}"
        if self.minimum is None:
            return f"must be less than {high}" if self.max_open else f"must be at most {high}"
        return f"must be in {'(' if self.min_open else '['}{low}, {high}{')' if self.max_open else ']'}"


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else ""


@dataclass(frozen=True)
class Choices:
    """The values a text setting may take."""

    values: tuple[str, ...]

    def holds(self, value: str) -> bool:
        return value in self.values

    def requirement(self) -> str:
        *others, last = self.values
        return f"must be {', '.join(others)} or {last}" if others else f"must be {last}"


POSITIVE = Range(1)  # an integer of 1 or more
NOT_NEGATIVE = Range(0)
ABOVE_ZERO = Range(0, min_open=True)
FRACTION = Range(0.0, 1.0, max_open=True)  # a dropout or a decay: 1 is not allowed


def setting(
    default,
    metavar: str | None = None,
    help: str | None = None,
    allowed: Range | Choices | None = None,
    *,
    auto: bool = False,
    negatable: bool = False,
    folder: bool = False,
):
    """A dataclass field that commands take as an option: the name of its value (None: click's own),
    its help text and allowed values, which the option shows and `check_settings` applies.
    auto: training chooses the value given as auto (textlstm/training/auto_settings.py); with a
    default of None, None is auto and the option takes the word auto besides numbers. negatable: a
    bool given as --x/--no-x (else a flag that turns it on). folder: the value names a folder."""
    return field(
        default=default,
        metadata={
            "metavar": metavar,
            "help": help,
            "allowed": allowed,
            "auto": auto,
            "negatable": negatable,
            "folder": folder,
        },
    )


def internal(default, allowed: Range | None = None):
    """A dataclass field that no command has an option for: the code (or a Python caller) sets it."""
    return field(default=default, metadata={"internal": True, "allowed": allowed})


def check_settings(settings) -> None:
    """Each field of the dataclass `settings` against its declared allowed values; None passes where
    it is the default (not given, or auto)."""
    for option in dataclasses.fields(settings):
        allowed, value = option.metadata.get("allowed"), getattr(settings, option.name)
        if allowed is None or (value is None and option.default is None):
            continue
        _check(allowed.holds(value), f"{option.name.replace('_', '-')} {allowed.requirement()}, got {value!r}")


# --device and --precision: declared here once, for every command that runs a model (train's are fields
# of TrainConfig, the others' of DeviceSettings), so each has the same default, values and help.
PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")


def device_setting():
    """The setting of --device (textlstm/hardware/device.py resolves it)."""
    return setting(
        AUTO,
        help="auto (a CUDA GPU if torch sees one, else the CPU; the CPU for int8 weights), cpu, cuda, cuda:N or mps.",
    )


def precision_setting():
    """The setting of --precision (textlstm/hardware/precision.py resolves auto)."""
    return setting(
        AUTO,
        help="The number format the model computes in. train and eval run the forward pass in it under autocast "
        "(weights, gradients and optimizer stay float32; float16 training scales the loss against underflow); "
        "generate, chat and serve hold the weights in it (the text differs slightly from float32's). bfloat16 is "
        "computed natively by CPUs with bf16 instructions (AVX-512 BF16, AMX) and GPUs from Ampere on; float16 is for "
        "older CUDA GPUs. auto: bfloat16 where the CPU or GPU computes it natively, float16 on other CUDA GPUs, "
        "float32 elsewhere and with --quantize int8.",
        allowed=Choices(PRECISION_CHOICES),
    )


@dataclass(frozen=True)
class DeviceSettings:
    """Where and in what precision eval, generate, chat and serve run the model."""

    device: str = device_setting()
    precision: str = precision_setting()

    def __post_init__(self):
        check_settings(self)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = internal(0, NOT_NEGATIVE)  # 0: taken from the tokenizer when training starts
    # None: auto, planned when training starts (textlstm/training/budget_plan.py): with a time budget,
    # from the measured speed of candidate shapes; else 2 x 256, embedding 64.
    embedding_size: int | None = setting(
        None,
        help="Embedding size. auto: planned with the hidden size (a quarter of it, at least 16).",
        allowed=POSITIVE,
        auto=True,
    )
    hidden_size: int | None = setting(
        None,
        help="LSTM units per layer. auto: with --max-minutes, the candidate sizes are timed on this machine and "
        "the size rule picks the one expected to learn most in the budget, with at most 17 LSTM weights per "
        "training token (sizes beyond 768 on a device whose speed is flat in the size, a GPU); 256 without "
        "--max-minutes, and for a text outside the sizes the rule was fitted on (0.2M-2.75M tokens; a larger "
        "one on such a device excepted).",
        allowed=POSITIVE,
        auto=True,
    )
    layers: int | None = setting(None, help="Stacked LSTM layers. auto: 2.", allowed=POSITIVE, auto=True)
    # None: auto, chosen from the corpus and the budget when training starts (auto_settings.regularization_for).
    # A model built from a config that still says None (outside training) has no dropout.
    dropout: float | None = setting(
        None,
        help="Dropout on embeddings, between LSTM layers and before the output layer. auto: chosen from the "
        "epochs the budget buys, weighed by the model's size against the text's, once the data is prepared.",
        allowed=FRACTION,
        auto=True,
    )
    recurrent_dropout: float | None = setting(
        None,
        help="Dropout on the hidden-to-hidden path, one mask per batch fixed over time. auto: chosen like --dropout.",
        allowed=FRACTION,
        auto=True,
    )
    embedding_dropout: float = setting(
        0.0,
        help="Drop whole rows of the embedding matrix in training, one mask over the vocabulary per batch: "
        "every occurrence of a dropped token is zeroed (AWD-LSTM). 0: off.",
        allowed=FRACTION,
    )
    cell: str = setting(  # the Mogrifier is textlstm/model/mogrifier.py
        "lstm",
        help="lstm: the plain LSTM, run by the fused kernel. mogrifier: the Mogrifier LSTM (Melis et al., ICLR 2020): "
        "before each step the input and the previous hidden state gate each other in --mogrifier-rounds rounds, "
        "through full-rank matrices learned per layer; it runs one time step at a time, so it is slower per step. "
        "Works with both --batching modes.",
        allowed=Choices(("lstm", "mogrifier")),
    )
    mogrifier_rounds: int = setting(  # 5: the paper's best setting
        5,
        help="Rounds of mutual gating with --cell mogrifier (0: the plain LSTM); ignored with --cell lstm.",
        allowed=NOT_NEGATIVE,
    )
    tie_weights: bool = setting(False, help="Share the embedding matrix with the output layer.", negatable=True)
    # auto: resolved with the vocabulary when training starts (model.network.model_config_for); a model built
    # from a config that still says auto, outside training, has the full softmax.
    output_layer: str = setting(
        AUTO,
        help="full: softmax over the whole vocabulary. adaptive: adaptive softmax (frequent tokens in a small head, "
        "rare ones in clusters); much faster for large vocabularies, still an exact distribution. auto (the "
        "default): adaptive for a vocabulary of 4,096 tokens or more trained in float32, full otherwise and with "
        "--tie-weights; the run's config records the one used.",
        allowed=Choices(("full", "adaptive", AUTO)),
        auto=True,
    )
    adaptive_cutoffs: list[int] | None = setting(  # None: derived from vocab_size (see model.default_cutoffs)
        None,
        "TEXT",
        "Cluster boundaries for --output-layer adaptive, e.g. 2000,10000. "
        "Default: 2000,10000 clipped to the vocabulary.",
    )
    # The id of <0x00> when the vocabulary holds a char tokenizer's 256 byte-fallback tokens (set from
    # the tokenizer): they then share one softmax output (textlstm/model/byte_softmax.py). None: a plain softmax.
    byte_fallback_start: int | None = internal(None)

    def __post_init__(self):
        check_settings(self)
        _check(
            not (self.tie_weights and self.output_layer == "adaptive"),
            "--tie-weights does not work with --output-layer adaptive "
            "(the adaptive softmax has no single output matrix to tie)",
        )
        if self.byte_fallback_start is not None:
            _check(
                self.output_layer != "adaptive" and not self.tie_weights,
                "byte-fallback-start needs --output-layer full without --tie-weights",
            )
            _check(
                0 <= self.byte_fallback_start
                and (self.vocab_size == 0 or self.byte_fallback_start + 256 <= self.vocab_size),
                f"byte-fallback-start {self.byte_fallback_start} leaves no room for 256 byte tokens "
                f"in a vocabulary of {self.vocab_size}",
            )
        if self.adaptive_cutoffs is not None:
            _check(self.output_layer != "full", "--adaptive-cutoffs needs --output-layer adaptive")
            cutoffs = list(self.adaptive_cutoffs)
            _check(
                cutoffs == sorted(set(cutoffs)) and all(c >= 1 for c in cutoffs) and cutoffs,
                f"adaptive-cutoffs must be increasing positive integers, got {cutoffs}",
            )
            _check(
                self.vocab_size == 0 or cutoffs[-1] < self.vocab_size,
                f"adaptive-cutoffs must be below the vocabulary size ({self.vocab_size}), got {cutoffs}",
            )


@dataclass(frozen=True)
class DataConfig:
    dataset: str | None = setting(  # None: the built-in corpus
        None,
        help="Hugging Face hub id, a local file/folder/glob (txt, json, jsonl, csv, parquet), "
        "or a corpus card name (corpora/NAME.toml here, or one shipped with textlstm, such as tinyshakespeare). "
        "Default: the built-in corpus (Python's own documentation).",
    )
    dataset_config: str | None = setting(None, help="Configuration name of a hub dataset.")
    split: str = setting("train", help="Split to train on.")
    valid_split: str | None = setting(
        None,
        help="Split to validate on. Default: the dataset's validation split, else the last 10% of the training text.",
    )
    text_column: str | None = setting(
        None, help="Column holding the text (json/csv/parquet/hub). Default: 'text' or the only string column."
    )
    # auto: chosen on the corpus when a new run starts (training/tokenizer_choice.py)
    tokenizer: str = setting(
        AUTO,
        help="char: one token per character; word: words, punctuation and spacing; bpe: byte-level BPE. "
        "auto (the default): char where the budget reads the training text often for the model's size (6 "
        "weighted epochs or more, the char model's speed timed on this machine); otherwise, with --max-minutes, "
        "a race inside the budget of char and bpe of 1,024, 4,096 and 16,384 tokens (the sizes with 500 "
        "characters of training text per token or more) on the text's first characters, the lowest validation "
        "bits/char winning; char where no race fits (no time budget, under 10 s per candidate, a streamed "
        "corpus). The run prints why and its config records the one chosen.",
        allowed=Choices(("char", "word", "bpe", AUTO)),
        auto=True,
    )
    vocab_size: int | None = setting(  # word and bpe only
        None,
        help="Vocabulary size for word (default 10000) and bpe (default 4096; the raced size when --tokenizer auto "
        "chooses bpe).",
        allowed=Range(8),
    )
    batching: str = setting(
        "stream",
        help="stream: documents joined into one text, truncated BPTT with the state carried across batches (and "
        "document ends). documents: each document on its own, cut into windows of --seq-len tokens that each train "
        "from a zero state, padded and masked (evaluation carries the state through the whole document); for "
        "corpora of short independent texts.",
        allowed=Choices(("stream", "documents")),
    )
    turns: TurnFormat | None = internal(None)  # how the corpus writes a conversation: its card's [chat] table
    streaming: bool = setting(  # textlstm/data/streaming.py
        False,
        help="Read the corpus (local files or a hub id) as a stream, tokenized as training needs it: nothing "
        "is cached on disk and memory does not grow with the corpus. Validation: the first 1,000,000 characters of "
        "the corpus's validation split (or --valid-split); without one, for local files the last 10% of their "
        "characters, as a stored corpus holds out (the files are read through once to count them; its first "
        "1,000,000 characters are scored), for a hub id the stream's first rows, 1,000,000 characters' worth (a "
        "tenth of a stream shorter than 10,000,000). The tokenizer learns from the first 10,000,000 characters of "
        "the training rows. Give --max-steps or --max-minutes, not --epochs.",
    )

    def __post_init__(self):
        if isinstance(self.turns, dict):  # as read back from config.json
            object.__setattr__(self, "turns", turn_format(self.turns, "the data.turns of config.json"))
        check_settings(self)
        _check(not (self.streaming and self.batching == "documents"), "--streaming trains with --batching stream only")


@dataclass(frozen=True)
class TrainConfig:
    # None: auto, planned with the shape when training starts (textlstm/training/budget_plan.py).
    batch_size: int | None = setting(
        None,
        help="Rows per step, all processes together: with N processes (--nproc, torchrun) each reads "
        "batch-size / N of them, so it must be a multiple of N; a step then sees the same data at any N. "
        "auto: 16 (the next multiple of N under N processes) on a CPU and without --max-minutes; on another "
        "device (a GPU) with --max-minutes, doubled while the timed speed and the size rule say a larger batch "
        "learns more in the budget.",
        allowed=POSITIVE,
        auto=True,
    )
    seq_len: int = setting(64, help="Tokens per row per step (the truncated-BPTT length).", allowed=POSITIVE)
    # None: auto, from the batch (auto_settings.learning_rate_for) once it is planned.
    lr: float | None = setting(
        None,
        help="Peak learning rate (AdamW). auto: 0.004 at a batch of 16 rows or fewer; above, 0.004 x "
        "sqrt(batch / 16), at most 0.008.",
        allowed=ABOVE_ZERO,
        auto=True,
    )
    # None: auto, chosen with the dropouts when training starts (auto_settings.regularization_for);
    # an optimizer built from a config that still says None (outside training) has no weight decay.
    weight_decay: float | None = setting(
        None,
        help="AdamW weight decay of the weight matrices. auto: chosen with the dropouts.",
        allowed=NOT_NEGATIVE,
        auto=True,
    )
    schedule: str = setting(  # warmup, then cosine decay to min_lr_ratio * lr, or constant
        "cosine",
        help="Learning rate after warmup: cosine decay to 10% of --lr at the last step, or constant.",
        allowed=Choices(("cosine", "constant")),
    )
    warmup_steps: int = setting(50, allowed=NOT_NEGATIVE)
    min_lr_ratio: float = internal(0.1, Range(0, 1))  # no option: --schedule's help says 10%
    clip: float = setting(1.0, help="Gradient norm clipping (0: off).", allowed=NOT_NEGATIVE)
    ar: float = setting(
        2.0,
        help="Activation regularization (AWD-LSTM): adds AR * mean(h^2) of the last LSTM layer's outputs after "
        "dropout to the loss that is backpropagated (the reported loss stays the cross-entropy). 0: off.",
        allowed=NOT_NEGATIVE,
    )
    tar: float = setting(
        1.0,
        help="Temporal activation regularization (AWD-LSTM): adds TAR * mean((h_t - h_(t-1))^2) of the last LSTM "
        "layer's outputs before dropout to the loss that is backpropagated. 0: off.",
        allowed=NOT_NEGATIVE,
    )
    ema: float = setting(
        0.0,
        help="Keep an exponential moving average of the weights with this decay (e.g. 0.999; warmed up as "
        "min(EMA, (1+n)/(10+n)) at update n); evaluations and the saved best weights use it, training goes on "
        "with the trained weights. 0: off.",
        allowed=FRACTION,
    )
    # The run stops at whichever of these comes first; with none of them given, after DEFAULT_MINUTES.
    epochs: int | None = setting(None, help="Passes over the training split.", allowed=POSITIVE)
    max_steps: int | None = setting(None, help="Training steps.", allowed=POSITIVE)
    max_minutes: float | None = setting(
        None,
        help=f"Minutes of the run's time budget: choosing the tokenizer (--tokenizer auto), the steps timed to plan "
        f"the run, and training with its evaluations; reading and tokenizing the corpus, and a last evaluation when "
        f"the clock stops the run between "
        f"evaluations, come on top. The learning-rate schedule follows the clock. Of --epochs, --max-steps "
        f"and --max-minutes, the run ends at whichever given one comes first. "
        f"Default, with none of them given: {DEFAULT_MINUTES:g} minutes.",
        allowed=ABOVE_ZERO,
    )
    eval_every: int | None = setting(
        None,
        help="Evaluate and save a checkpoint every N steps (and at the end). auto: with --max-minutes, spaced so "
        "that evaluations take about 5% of the budget (4 to 40 of them); else 500.",
        allowed=POSITIVE,
        auto=True,
    )
    save_every: int | None = setting(
        None, help="Also save the resume state every N steps. Default: at each evaluation.", allowed=POSITIVE
    )
    save_every_minutes: float = setting(
        10.0,
        help="Also save the resume state when this many minutes have passed since the last save (0: off).",
        allowed=NOT_NEGATIVE,
    )
    eval_tokens: int = setting(
        1_048_576,
        help="Validation tokens scored by each evaluation during training (textlstm eval scores the whole split).",
        allowed=POSITIVE,
    )
    patience: int | None = setting(
        None,
        help="Stop after this many evaluations in a row without improvement, counted once the learning rate is past "
        "the middle of its decay (before, a high rate makes the validation loss noisy; with --schedule constant, from "
        "the start). 0: never. auto: 3, or as many evaluations as a fifth of the run holds if that is more, and with a "
        "decaying rate none before the decay is 80% through (the loss can stall, then fall again as the rate comes "
        "down).",
        allowed=NOT_NEGATIVE,
        auto=True,
    )
    # Following a run (textlstm/training/tracking.py); neither changes what the run learns.
    sample_every: int = setting(
        0,
        help="At every Nth evaluation and the last one, sample about 200 characters from the evaluated "
        "weights (from the start of a document, seeded by --seed and the step): printed and appended to "
        "samples.jsonl in the run folder. 0: off.",
        allowed=NOT_NEGATIVE,
    )
    log_to: str = setting(
        "none",
        help="tensorboard: also write each evaluation's figures, the run's settings and the samples for "
        'TensorBoard, into the run folder\'s tensorboard/ (needs pip install "textlstm[tracking]"). '
        "none: metrics.jsonl only.",
        allowed=Choices(("none", "tensorboard")),
    )
    seed: int = setting(1337)
    device: str = device_setting()
    threads: int | None = setting(  # None: threads.default_threads for the shape
        None,
        help="CPU threads for torch. Default: OMP_NUM_THREADS if set; else one for small models, where a second "
        "thread only adds waiting, and one per core for large ones (measured in benchmarks/RESULTS.md).",
        allowed=POSITIVE,
    )
    precision: str = precision_setting()  # auto: precision.training_precision
    # The checkpoint whose weights and tokenizer this run started from (its parent); config.json holds it resolved.
    init_from: str | None = setting(
        None,
        help="Fine-tune: start from this checkpoint's weights and tokenizer (its model shape too), "
        "with a new optimizer, schedule and run folder. "
        "A folder, or hf://USER/NAME[@REVISION] from the Hugging Face Hub.",
        folder=True,
    )

    def __post_init__(self):
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            object.__setattr__(self, "max_minutes", DEFAULT_MINUTES)
        check_settings(self)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: str = __version__
    format: int = CHECKPOINT_FORMAT
    world_size: int = 1  # processes the run started with (torchrun); the batch's rows are split between them
    launch_id: str | None = (
        None  # torchrun's id of the launch that started it: processes it restarts find the run by it
    )
    plan: dict | None = (
        None  # what the planner measured and chose (textlstm/training/budget_plan.py); None: nothing timed
    )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            raw = json.loads(text)
            _check(isinstance(raw, dict), "config.json does not hold a JSON object")
            fmt = raw.get("format")
            _check(
                fmt == CHECKPOINT_FORMAT,
                f"checkpoint format {fmt} is not supported (this textlstm reads format {CHECKPOINT_FORMAT})",
            )
            return cls(
                model=ModelConfig(**raw["model"]),
                data=DataConfig(**raw.get("data", {})),
                train=TrainConfig(**{**ABSENT_TRAIN_SETTINGS, **raw.get("train", {})}),
                version=raw.get("version", "unknown"),
                format=fmt,
                world_size=int(raw.get("world_size", 1)),
                launch_id=raw.get("launch_id"),
                plan=raw.get("plan"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise TextlstmError(f"config.json is not a valid textlstm config: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise TextlstmError(f"cannot read {path}: {error}") from None
        return cls.from_json(text)


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
        "Nucleus sampling: sample only among the fewest most likely tokens whose probabilities add up to P; "
        "1 turns this off.",
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
        check_settings(self)
        _check(all(self.stop), "a stop string must not be empty")


@dataclass
class ServeSettings:
    """What `textlstm serve` runs a model with (textlstm/serve/app.py); each field that is not internal
    is one of its options."""

    # --model-name: the option's default is the checkpoint's name, known once the model is loaded
    model_name: str = field(metadata={"internal": True})
    turn_format: TurnFormat | None = internal(None)  # how chat messages become text; None: the checkpoint's
    max_conversations: int = setting(
        10_000,
        help="Conversation states kept for each API key, for requests that send a conversation_id; "
        "the least recently used go first.",
        allowed=NOT_NEGATIVE,
    )
    max_conversations_total: int = setting(
        10_000,
        help="Conversation states kept in all, every API key's together; beyond this the least recently used "
        "of any key goes first.",
        allowed=NOT_NEGATIVE,
    )
    max_sequences: int = setting(
        4096,
        help="Sequences generated at once, all requests together; beyond this a request gets 429.",
        allowed=POSITIVE,
    )
    threads: int = setting(1, help="CPU threads for the model step.", allowed=POSITIVE)
    # What one request and one key may ask (serve/limits.py): over these a request gets 400, or 429 for
    # the key's sequences.
    max_request_tokens: int = setting(
        65_536, help="Tokens one request may generate: prompts x n x max_tokens.", allowed=POSITIVE
    )
    max_prompt_tokens: int = setting(
        2**20, help="Prompt tokens read for one request (each prompt once for each choice).", allowed=POSITIVE
    )
    max_sequences_per_key: int = setting(
        1024, help="Sequences active at once for one API key; beyond this its requests get 429.", allowed=POSITIVE
    )
    request_timeout: float = setting(
        600.0,
        "SECONDS",
        "A request still running after this long is stopped and answered with an error; 0: never.",
        NOT_NEGATIVE,
    )
    max_inspect_chars: int = setting(
        4_000,
        help="Characters of text one /v1/inspect request may look into (the Cells tab of the page): its answer "
        "holds 5 values per layer, token and cell.",
        allowed=POSITIVE,
    )
    max_request_bytes: int = internal(4 * 2**20, POSITIVE)  # a bigger request body gets 413
    # Prompt tokens read per step while others generate; None: adaptive.
    prompt_chunk: int | None = internal(None, POSITIVE)

    def __post_init__(self):
        check_settings(self)
