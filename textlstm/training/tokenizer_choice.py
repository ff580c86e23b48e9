"""--tokenizer auto: char, or BPE of one of several sizes, chosen on the run's own text by what its budget buys.

Two measurements, both taken on the user's training text and both counted in a time budget:

1. How many times the budget reads the text with a char model: the speed of the run's shape (the default
   one where it is left to the plan), timed with a char tokenizer on the text's first TIMING_CHARS
   characters, times the seconds the run will train, over the text's characters (for --max-steps and
   --epochs alone: what they count); weighed by the model's size against the text's as the dropout table
   weighs them (auto_settings.weighted_epochs, W). A run with W of CHAR_WEIGHTED_EPOCHS or more trains
   char without a race: where a run reads a text that often for its size, char learned most in whole
   runs, while a short race still puts BPE ahead (after a few hundred steps BPE leads on any text; with
   epochs char catches up and passes it).
2. Otherwise a race: each of CANDIDATES with at least MIN_CHARS_PER_ENTRY characters of training text per
   entry of its vocabulary learns its tokenizer from the first RACE_TRAIN_CHARS of the training text,
   trains the same model on them for an equal share of RACE_SHARE of the run's seconds (at most
   MAX_RACE_SECONDS each), and is scored in bits per character on the first RACE_VALID_CHARS of the
   validation text. The lowest wins. A vocabulary large for its text leads a short race and falls behind
   in a long run, so such sizes are not raced.

Where neither applies (a streamed corpus, a run whose budget cannot be counted, no time to race in, a
validation text too short to score a race on) the run trains char, as the planner's rules were measured
with. Each choice comes with its reason, printed as "tokenizer: KIND (auto: REASON)". The figures behind
CHAR_WEIGHTED_EPOCHS, MIN_CHARS_PER_ENTRY and the race: benchmarks/experiments/e2026_12_07_tokenizer_race
and e2026_12_07_tokenizer_bound.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from textlstm.config import ModelConfig, RunConfig
from textlstm.data.batchers import StreamBatcher
from textlstm.data.corpora import Corpus
from textlstm.data.corpora.splits import character_count
from textlstm.data.text_pieces import first_chars, split_pieces
from textlstm.data.tokenizer import TextTokenizer, build_tokenizer
from textlstm.evaluation.scoring import score_stream
from textlstm.hardware.threads import use_threads
from textlstm.model.network import LSTMLanguageModel, model_config_for
from textlstm.training import auto_settings, distributed, plan_walk
from textlstm.training.auto_settings import model_weights
from textlstm.training.optimizer import build_optimizer
from textlstm.training.speed_probe import SpeedProbe
from textlstm.training.step import TrainingStep

CANDIDATES = (("char", None), ("bpe", 1024), ("bpe", 4096), ("bpe", 16384))
CHAR_WEIGHTED_EPOCHS = 6.0
MIN_CHARS_PER_ENTRY = 500  # of training text per entry of a BPE vocabulary, for it to be raced
RACE_SHARE = 0.08  # of a time budget, for the whole race
MIN_RACE_SECONDS = 10.0  # of training per candidate: below it a race ranks noise, and the run trains char
MAX_RACE_SECONDS = 120.0  # per candidate: a long budget's race ends well inside the processes' 30-minute wait
MIN_RACE_VALID_CHARS = 10_000
TIMING_CHARS = 256_000  # of the sample, encoded to time the char model
RACE_TRAIN_CHARS = 4_000_000
RACE_VALID_CHARS = 100_000
RACE_SEED = 0
now = time.perf_counter


@dataclass(frozen=True)
class TokenizerChoice:
    kind: str  # char or bpe
    vocab_size: int | None  # bpe's size; the run's --vocab-size wins
    reason: str  # shown as "tokenizer: KIND (auto: REASON)"
    seconds: float = 0.0  # what choosing took, counted in the run's time budget
    race: dict[str, float] | None = None  # bits/char of each candidate raced, by name


@dataclass(frozen=True)
class TextSample:
    """What the choice reads of a corpus: its training text's size, and the first characters of its splits."""

    train_chars: int
    train: str
    valid: str

    @classmethod
    def of(cls, corpus: Corpus) -> TextSample:
        def first(dataset, limit: int) -> str:
            return "".join(first_chars(split_pieces(dataset, corpus.documents), limit))

        return cls(
            character_count(corpus.train), first(corpus.train, RACE_TRAIN_CHARS), first(corpus.valid, RACE_VALID_CHARS)
        )


def choose_tokenizer(config: RunConfig, corpus: Corpus | None, device: torch.device, precision: str) -> TokenizerChoice:
    """The tokenizer for a new run of `config` on `corpus` (None: streamed, not read before training)."""
    started = now()
    if corpus is None:
        return TokenizerChoice("char", None, "a streamed text is not read before its tokenizer is trained")
    sample = TextSample.of(corpus)
    char = build_tokenizer("char", _pieces(sample.train))
    epochs, how, run_seconds = _char_epochs(config, sample, char, device, precision)
    if epochs is None:
        return TokenizerChoice("char", None, "no budget to count the epochs by: char, as the rules were measured")
    model = race_model(config, char)
    weighted = auto_settings.weighted_epochs(sample.train_chars, epochs * sample.train_chars, model_weights(model))
    read = (
        f"the budget reads the text about {_times(epochs)} with char ({how}), "
        f"{weighted:.2g} weighted epochs for {model.layers} x {model.hidden_size}"
    )
    if weighted >= CHAR_WEIGHTED_EPOCHS:
        reason = f"{read}; from {CHAR_WEIGHTED_EPOCHS:g} up char learned most in the runs measured"
        return TokenizerChoice("char", None, reason, now() - started)
    candidates = candidates_for(config, sample.train_chars)
    if len(candidates) == 1:
        return TokenizerChoice("char", None, f"{read}{_left_out(config, candidates)}", now() - started)
    seconds_each = min(MAX_RACE_SECONDS, RACE_SHARE * run_seconds / len(candidates))
    if seconds_each < MIN_RACE_SECONDS or len(sample.valid) < MIN_RACE_VALID_CHARS:
        why = "no time budget to race tokenizers in" if not run_seconds else "the run is too short to race in"
        if len(sample.valid) < MIN_RACE_VALID_CHARS:
            why = f"its validation text, under {MIN_RACE_VALID_CHARS:,} characters, is too short to race on"
        return TokenizerChoice("char", None, f"{read}; {why}", now() - started)
    results = {}
    for kind, size in candidates:
        tokenizer = char if kind == "char" else build_tokenizer(kind, _pieces(sample.train), size)
        results[_name(kind, size)] = race_one(config, tokenizer, sample, seconds_each, device, precision)
    winner = min(results, key=results.get)
    kind, size = next((kind, size) for kind, size in candidates if _name(kind, size) == winner)
    raced = ", ".join(f"{name} {bits:.3f}" for name, bits in results.items())
    reason = (
        f"{read}; raced {seconds_each:.0f} s each on its first {_chars(len(sample.train))}, "
        f"bits/char on validation: {raced}{_left_out(config, candidates)}"
    )
    return TokenizerChoice(kind, size, reason, now() - started, results)


def candidates_for(config: RunConfig, train_chars: int) -> tuple[tuple[str, int | None], ...]:
    """The tokenizers raced on a text of `train_chars` training characters: char and the BPE sizes of
    CANDIDATES with MIN_CHARS_PER_ENTRY characters per entry, or char and BPE of the run's --vocab-size
    where it gives one."""
    if config.data.vocab_size is not None:
        return (("char", None), ("bpe", config.data.vocab_size))
    return tuple((kind, size) for kind, size in CANDIDATES if size is None or train_chars >= MIN_CHARS_PER_ENTRY * size)


def _left_out(config: RunConfig, raced: tuple) -> str:
    """The reason's note of the BPE sizes too large for the text to be raced ("" if none)."""
    if config.data.vocab_size is not None or len(raced) == len(CANDIDATES):
        return ""
    sizes = ", ".join(f"{size:,}" for kind, size in CANDIDATES if (kind, size) not in raced)
    return f"; not raced: bpe {sizes}, under {MIN_CHARS_PER_ENTRY} characters of text per entry"


def race_one(
    config: RunConfig,
    tokenizer: TextTokenizer,
    sample: TextSample,
    seconds: float,
    device: torch.device,
    precision: str,
) -> float:
    """Validation bits per character of the race's model with `tokenizer`, trained `seconds` on the sample."""
    train_ids = _ids(tokenizer, sample.train)
    valid_ids = _ids(tokenizer, sample.valid)
    model_config = race_model(config, tokenizer, precision)
    train = _race_train_config(config)
    use_threads(
        train.threads, model_config.embedding_size, model_config.hidden_size, model_config.layers,
        train.batch_size, precision,
    )  # fmt: skip
    random_state = torch.get_rng_state()
    torch.manual_seed(RACE_SEED)
    try:
        model = LSTMLanguageModel(model_config).to(device)
        step = TrainingStep(model, build_optimizer(model, train), train, device, precision, alone=True)
        batcher = StreamBatcher(train_ids, train.batch_size, train.seq_len, 0, 1)
        state, taken, deadline = None, 0, now() + seconds
        while now() < deadline:
            inputs, targets = batcher.batch(taken % len(batcher))
            state = step(inputs.to(device), targets.to(device), state, None, train.lr).state
            taken += 1
        loss, _ = score_stream(model, valid_ids, train.batch_size, train.seq_len, device=device, precision=precision)
    finally:
        torch.set_rng_state(random_state)
    return loss / len(sample.valid) / math.log(2)  # the first token is not scored: a few characters of 100,000


def race_model(config: RunConfig, tokenizer: TextTokenizer, precision: str = "float32") -> ModelConfig:
    """The model every candidate trains: the run's shape where it is given, else the default; no dropout."""
    model = config.model
    layers, hidden, embedding = plan_walk.sized_shape(model, *plan_walk.DEFAULT_SHAPE)
    cutoffs = model.adaptive_cutoffs
    if cutoffs and cutoffs[-1] >= tokenizer.vocab_size:  # the run's cutoffs, for a larger vocabulary than this
        cutoffs = None
    shaped = dataclasses.replace(
        model,
        layers=layers,
        hidden_size=hidden,
        embedding_size=embedding,
        dropout=0.0,
        recurrent_dropout=0.0,
        adaptive_cutoffs=cutoffs,
    )
    return model_config_for(shaped, tokenizer, precision)


def _race_train_config(config: RunConfig):
    train = config.train
    return dataclasses.replace(
        train,
        batch_size=train.batch_size or auto_settings.TUNED_BATCH,
        lr=train.lr or auto_settings.TUNED_LR,
        weight_decay=0.01 if train.weight_decay is None else train.weight_decay,
    )


def _char_epochs(
    config: RunConfig, sample: TextSample, char: TextTokenizer, device: torch.device, precision: str
) -> tuple[float | None, str, float]:
    """The times the budget reads the training text with a char model, how that was found, and the
    seconds a char run would train: its time budget, or less where a step or epoch limit ends it first
    (0 without a time budget). Under several processes each trains its share of the batch, as fast
    as process 0 times its own (as the planner counts them)."""
    train = _race_train_config(config)
    counted = auto_settings.budget_tokens(config.train, sample.train_chars, train.batch_size)
    if not config.train.max_minutes:
        if counted is None:
            return None, "", 0.0
        return counted / sample.train_chars, "as the step and epoch limits count it", 0.0
    world = distributed.world_size()
    timed_ids = _ids(char, sample.train[:TIMING_CHARS])
    probe = SpeedProbe(train, timed_ids, device, precision).measure(
        race_model(config, char, precision), max(1, train.batch_size // world)
    )
    speed = probe.tokens_per_sec * world
    seconds = config.train.max_minutes * 60
    if counted is not None:
        seconds = min(seconds, counted / speed)
    return speed * seconds / sample.train_chars, f"timed at {speed:,.0f} chars/s", seconds


def _ids(tokenizer: TextTokenizer, text: str) -> np.ndarray:
    return np.concatenate([np.zeros(0, dtype=np.int64), *tokenizer.encode_arrays(_pieces(text))])


def _pieces(text: str, size: int = 100_000) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


def _name(kind: str, size: int | None) -> str:
    return kind if size is None else f"{kind} {size:,}"


def _times(epochs: float) -> str:
    return f"{epochs:.2g} times" if epochs < 10 else f"{epochs:.0f} times"


def _chars(count: int) -> str:
    return f"{count / 1e6:.1f}M characters" if count >= 100_000 else f"{count:,} characters"
