"""The plan of a run with a time budget: which model shape and batch, how many tokens it will see, how
often to evaluate, measured on this machine before anything is chosen.

With --max-minutes and the shape or batch left at auto, candidates (a shape and a batch) are timed for
a few real steps each (speed_probe.py), walking up from the smallest shape at the batch the rules were
measured at (TUNED_BATCH rows): to the next larger shape, and off the CPU to a batch twice as large,
while the size rule (predicted_loss) expects the step to learn at least MARGIN more. The tokens a
candidate would train on in the budget are its measured rate times the seconds left; the rule says
which learns most from that many tokens of a text that size. The learning rate follows the batch
(auto_settings.learning_rate_for), the dropouts and weight decay the epochs of the chosen shape and
its size (auto_settings.regularization_for), and the evaluations are spaced so that they take about
EVAL_SHARE of the budget. Timing (measure_for_plan) comes first; the choice (resolve_plan) is a pure
function of the settings, the corpus's size and those measurements.

Where the rule was not fitted the plan says so and makes the default plan (DEFAULT_SHAPE at the
tuned batch and rate, the dropouts by their table), except where a principled bound takes over
(see FITTED_TEXT_TOKENS): a larger text on a device whose speed is flat in the model's size (a GPU)
keeps the walk, bounded by the weights per training token (MAX_WEIGHTS_PER_TOKEN) and the device's
memory.

Without a time budget (--max-steps or --epochs alone) the token budget is known and nothing is
timed: the shape is DEFAULT_SHAPE and the batch TUNED_BATCH, since fewer tokens per step would not
make the steps fewer.

The fitting runs behind the rule's constants, and its leave-one-corpus-out figures, are in
benchmarks/experiments/e2026_12_02_size_rule; `python -m benchmarks.experiments.e2026_12_02_size_rule.fit_plan
--fit` recomputes them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from textlstm.config import AUTO, ModelConfig, RunConfig
from textlstm.hardware.device import device_name
from textlstm.hardware.threads import usable_cores
from textlstm.training import auto_settings
from textlstm.training.auto_settings import TUNED_BATCH, lstm_weights
from textlstm.training.speed_probe import DoesNotFit, Probe

SHAPE_FIELDS = ("layers", "hidden_size", "embedding_size")
# (layers, hidden size), smallest first: from the smallest fitted shape up. Two layers throughout:
# three learned no faster in the budgets measured
# (benchmarks/experiments/e2026_11_22_tinyshakespeare_settings). An embedding left at auto is a
# quarter of the hidden size, as in the fitting runs. 2 x 192, below the fitted range, was a candidate
# once and did worse than 2 x 256 where it was chosen (benchmarks/experiments/e2026_12_02_planned_budget).
CANDIDATE_SHAPES = ((2, 256), (2, 384), (2, 512), (2, 768))
# After those, on a device whose speed is flat in the model's size (FLAT_WORK, FLAT_SPEED): a GPU
# trains 2 x 1024 about as fast as 2 x 256 at a small batch, which a CPU never does.
EXTENDED_SHAPES = ((2, 1024), (2, 1536), (2, 2048), (2, 3072), (2, 4096))
DEFAULT_SHAPE = (2, 256)

# The rule, fitted on the 16 runs of benchmarks/experiments/e2026_12_02_size_rule (4 corpora x 2 shapes x 2
# token counts):
# validation loss (bits per character) = E(corpus) + A / N^ALPHA + B / D'^BETA, with N the LSTM's
# weights (in millions) and D' the training tokens (in millions) discounted for repetition: past the
# first epoch each further one counts less, D' = U (1 + R (1 - exp(-(D/U - 1) / R))) for D > U
# tokens of a U-token text, R from Muennighoff et al. (2023), not fitted. E(corpus) is the same for
# every shape, so the choice does not need it.
FIT_A, FIT_ALPHA, FIT_B, FIT_BETA, FIT_R = 0.1286, 0.843, 1.5062, 0.155, 15.0

# Where the rule was fitted: texts from verse's training tokens to python-source's (char tokens),
# 2 x 256 and 2 x 512, batch 16 x 64, one CPU core (benchmarks/experiments/e2026_12_02_size_rule).
# For a text outside these sizes the plan is the default one (DEFAULT_SHAPE,
# TUNED_BATCH, the dropout table), said in a plan line, with one exception: a larger text on a device
# whose speed is flat in the model's size. There the shapes cost the same time, so what bounds the
# model is not the trade of size against tokens the rule was fitted for but the text (the weights per
# token below) and the device's memory, which hold at any size. A smaller text, or a streamed one of
# unknown size, gets the default plan on every device.
FITTED_TEXT_TOKENS = (200_000, 2_750_000)
# The capacity term: at most this many LSTM weights per training token, a little over the most any
# fitting run had (2 x 512 on verse, where it learned no more than 2 x 256 in the same minutes;
# benchmarks/experiments/e2026_12_02_size_rule). The rule has no term for a model too large for its text: without
# this bound a small text would get the largest shape whose timing fits.
MAX_WEIGHTS_PER_TOKEN = 17.0
# Stability: a larger shape or batch is taken only where the rule expects it to learn at least MIN_GAIN
# bits per character more even with its timed speed TIMING_NOISE lower and the current one's as much
# higher, so that a few percent of timing noise does not move the choice. The same 15-minute command timed
# 2 x 384 8% apart on one core and planned two different models
# (benchmarks/experiments/e2026_12_02_dropout_by_size), and near the best size neighbouring shapes
# predict within a thousandth of a bit of each other (60 minutes of one core: 2 x 384 and 2 x 512),
# where today a 3% slower timing of one flips the choice. On a device whose speed is flat in the size a
# larger shape's gain does not depend on the timing; there MIN_GAIN ends the walk where the rule,
# extrapolated beyond the sizes it was fitted on, expects little more (less than its own rms error:
# benchmarks/experiments/e2026_12_02_size_rule).
TIMING_NOISE = 0.05
MIN_GAIN = 0.005

# Batches, off the CPU only: from the start batch (TUNED_BATCH rows, or the next multiple of the
# processes) doubling, at most BATCH_DOUBLINGS times. The tokens of a step of B tokens count as
# (1 + B0 / NOISE_BATCH_TOKENS) / (1 + B / NOISE_BATCH_TOKENS) of the start batch B0's, the steps-for-tokens
# trade of McCandlish et al., "An Empirical Model of Large-Batch Training" (2018), with its critical
# batch taken as the tuned 16 x 64 tokens: a batch twice as large must train 1.5 times the tokens a
# second to learn as much. On a CPU it trained fewer than that (benchmarks/experiments/e2026_11_25_two_threads,
# 16 x 64 against 32 x 64), and 32 x 128 learned less than 16 x 128 from the same tokens in 2-minute runs
# (benchmarks/experiments/e2026_11_22_tinyshakespeare_settings), so a CPU keeps the tuned batch and is not
# timed at others.
BATCH_DOUBLINGS = 6
NOISE_BATCH_TOKENS = 16 * 64
# A device is flat in the model's size where a timed shape of at least FLAT_WORK times the weights of
# the smallest one timed at the same batch trains at FLAT_SPEED of its tokens/s or more (a CPU: about
# a quarter, 2 x 512 against 2 x 256). A CPU is never taken as flat.
FLAT_WORK, FLAT_SPEED = 4.0, 0.5
# A candidate is timed only if its memory, estimated from the one it grows from, fits in this share of
# what the device had free (the rest for evaluation and the allocator's slack).
MEMORY_SHARE = 0.8

EVAL_SHARE = 0.05  # of a time budget, for evaluations
MIN_EVALUATIONS, MAX_EVALUATIONS = 4, 40
PROBE_SHARE = 0.1  # of a time budget: no more candidates are timed once the timing has taken this much

Shape = tuple[int, int, int]  # (layers, hidden size, embedding size)


class Candidate(NamedTuple):
    """What the planner times: a shape and a batch (rows a step, all processes together)."""

    shape: Shape
    batch_size: int


def effective_tokens(tokens: float, text_tokens: float | None) -> float:
    """Training tokens counted for what they teach: repeated epochs count less (see the rule)."""
    if not text_tokens or tokens <= text_tokens:
        return tokens
    return text_tokens * (1 + FIT_R * (1 - math.exp(-(tokens / text_tokens - 1) / FIT_R)))


def predicted_loss(shape: tuple[int, int, int], tokens: float, text_tokens: float | None) -> float:
    """The rule's loss for `shape` trained on `tokens` tokens of a `text_tokens`-token text, less the
    corpus's own term (bits per character above what the text allows)."""
    weights = lstm_weights(*shape) / 1e6
    seen = max(effective_tokens(tokens, text_tokens), 1.0) / 1e6
    return FIT_A / weights**FIT_ALPHA + FIT_B / seen**FIT_BETA


def batch_worth(batch_tokens: float, start_tokens: float) -> float:
    """What a token of a step of `batch_tokens` teaches, against one of a step of `start_tokens`
    (see NOISE_BATCH_TOKENS)."""
    return (1 + start_tokens / NOISE_BATCH_TOKENS) / (1 + batch_tokens / NOISE_BATCH_TOKENS)


@dataclass(frozen=True)
class Spending:
    """How one candidate would spend the time left: training tokens, and evaluations every so many steps."""

    tokens: float
    eval_every: int
    evaluations: int
    eval_seconds: float  # one evaluation's


@dataclass
class Plan:
    config: RunConfig  # with the shape, batch, learning rate, dropouts, weight decay and eval_every resolved
    lines: list[str]  # what was chosen and why, one line each
    seconds: float  # what planning took, counted in the budget
    record: dict  # config.json's "plan"


@dataclass(frozen=True)
class Measurements:
    """What the planner timed before choosing: the candidates in the order they were timed, the chosen
    shape again without dropout (when the dropouts are left to the plan), the candidates that could not
    be trained (out of memory, too few rows) with why, and what the plan was made for: the device's
    kind and the processes."""

    probes: dict[Candidate, Probe] = dataclasses.field(default_factory=dict)
    bare: Probe | None = None
    failed: dict[Candidate, str] = dataclasses.field(default_factory=dict)
    device_type: str = "cpu"
    processes: int = 1
    before: float = 0.0  # seconds the run's budget lost before planning (its tokenizer chosen by a race)

    @property
    def seconds(self) -> float:
        """What the timing took."""
        return sum(probe.seconds for probe in self.probes.values()) + (self.bare.seconds if self.bare else 0.0)


Measure = Callable[[ModelConfig, int], Probe]  # (shape, batch size) -> its speed; may raise DoesNotFit


def plan_run(
    config: RunConfig,
    train_tokens: int | None,
    valid_tokens: int,
    measure: Measure | None,
    processes: int = 1,
    device_type: str = "cpu",
    before: float = 0.0,
) -> Plan:
    """Measure what the plan needs on this machine (`measure` may be None without a time budget), then
    resolve the plan from those measurements. `before`: seconds of the budget already spent (choosing the
    tokenizer), left out of what the plan spends."""
    measurements = measure_for_plan(config, train_tokens, valid_tokens, measure, processes, device_type, before)
    return resolve_plan(config, train_tokens, valid_tokens, measurements)


def measure_for_plan(
    config: RunConfig,
    train_tokens: int | None,
    valid_tokens: int,
    measure: Measure | None,
    processes: int = 1,
    device_type: str = "cpu",
    before: float = 0.0,
) -> Measurements:
    """Time the candidates the walk asks for (see Walk), then the chosen shape without dropout, if the
    dropouts are the plan's to choose. Nothing is timed without a time budget or with nothing left to
    plan; `device_type` says whether the batch is worth timing (not on a CPU)."""
    if not _times_candidates(config, measure, device_type):
        return Measurements(device_type=device_type, processes=processes, before=before)
    budget = Budget(config, train_tokens, valid_tokens, processes, before)
    walk = Walk(
        config, budget, lambda candidate: measure(_with_shape(config.model, candidate.shape), candidate.batch_size)
    )
    chosen = walk.settle()
    bare = None
    if _auto_dropout(config.model):
        shape = dataclasses.replace(_with_shape(config.model, chosen.shape), dropout=0.0, recurrent_dropout=0.0)
        bare = measure(shape, chosen.batch_size)
    return Measurements(walk.probes, bare, walk.failed, device_type, processes, before)


def resolve_plan(config: RunConfig, train_tokens: int | None, valid_tokens: int, measurements: Measurements) -> Plan:
    """The resolved settings of a new run on `train_tokens` training tokens (None: streamed): a pure
    function of the settings, the corpus's size and what was measured."""
    model, train = config.model, config.train
    budget = Budget(config, train_tokens, valid_tokens, measurements.processes, measurements.before)
    lines, record, probes = [], {}, measurements.probes
    if probes:
        walk = Walk.replaying(config, budget, measurements)
        chosen = walk.settle()
        outside, shape_reason, batch_reason = walk.outside(), walk.shape_reason(chosen), walk.batch_reason(chosen)
    else:
        chosen = Candidate(sized_shape(model, *DEFAULT_SHAPE), budget.start_batch)
        outside, shape_reason = None, "no time budget to plan for: the default shape"
        batch_reason = (
            _CPU_BATCH
            if budget.seconds and measurements.device_type == "cpu"
            else "no time budget to plan for: the batch the rules were measured at"
        )
    config = _with_candidate(config, chosen)
    if outside:
        lines.append(f"outside the size rule's fitted range: {outside}")
    if any(getattr(model, name) is None for name in SHAPE_FIELDS):
        layers, hidden, embedding = chosen.shape
        lines.append(f"model: {layers} x {hidden}, embedding {embedding} ({AUTO}: {shape_reason})")
    if train.batch_size is None:
        lines.append(f"batch {chosen.batch_size} x {train.seq_len} ({AUTO}: {batch_reason})")
    if train.lr is None:
        why = auto_settings.learning_rate_reason(chosen.batch_size)
        lines.append(f"learning rate {config.train.lr:g} ({AUTO}: {why})")

    seconds = measurements.seconds
    counted = budget.counted(chosen.batch_size)
    tokens, spending, deciding = counted, None, counted
    if chosen in probes:
        probe = probes[chosen]
        if measurements.bare is not None:
            # The shapes were timed with dropout on. Whether the run needs it depends on the epochs it
            # would read without it, at the faster pace it would then run at.
            bare = measurements.bare
            deciding = budget.spending(bare, chosen.batch_size, seconds).tokens
            needed = auto_settings.regularization_for(train_tokens, deciding, lstm_weights(*chosen.shape))
            if not (needed.dropout or needed.recurrent_dropout):
                probe = bare
        spending = budget.spending(probe, chosen.batch_size, seconds)
        tokens = spending.tokens
        deciding = deciding or tokens
        lines.insert(0, _measured_line(chosen, probe, seconds, tokens, train_tokens))
        record = {
            "seconds": round(seconds, 2),
            "cores": usable_cores(),
            "device": probe.device,
            "device_name": device_name(probe.device),
            "chosen": list(chosen.shape),
            "batch_size": chosen.batch_size,
            "tokens": round(tokens),
            "tokens_per_sec_of_chosen": round(probe.tokens_per_sec),
            "epochs": round(tokens / train_tokens, 2) if train_tokens else None,
            "tokens_per_sec": {_key(c, budget.start_batch): round(p.tokens_per_sec) for c, p in probes.items()},
        }
        if outside:
            record["outside_fitted_range"] = outside
    config, chosen_regularization = auto_settings.resolve_regularization(config, train_tokens, deciding)
    if chosen_regularization:
        pace = chosen_regularization[:-1] + ", at the pace without dropout)"
        lines.append(pace if deciding != tokens else chosen_regularization)
    if config.train.eval_every is None:
        if spending:
            eval_every, why = spending.eval_every, _spacing_reason(spending)
        else:
            eval_every, why = 500, "no time budget: every 500 steps"
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, eval_every=eval_every))
        lines.append(f"evaluate every {eval_every:,} steps ({AUTO}: {why})")
    if record:
        config = dataclasses.replace(config, plan=record)
    return Plan(config, lines, measurements.before + seconds, record)


_CPU_BATCH = (
    "the batch the rules were measured at: on a CPU a batch twice as large trains 1.1-1.2 times the "
    "tokens/s, short of the 1.5 times it takes to learn as much, so larger ones are not timed"
)


class Budget:
    """A run's limits: the seconds of its time budget, and the tokens its step and epoch limits count."""

    def __init__(
        self, config: RunConfig, train_tokens: int | None, valid_tokens: int, processes: int = 1, before: float = 0.0
    ):
        train = config.train
        self.train, self.train_tokens = train, train_tokens
        self.seconds = max((train.max_minutes or 0) * 60 - before, 0.0) if train.max_minutes else 0.0  # left to plan
        self.scored = min(valid_tokens, train.eval_tokens)  # each evaluation's tokens
        # The batch the walk starts from: the one given, else the tuned one split evenly over the processes.
        self.start_batch = train.batch_size or processes * math.ceil(TUNED_BATCH / processes)

    def counted(self, batch_size: int) -> float | None:
        """The tokens the step and epoch limits count at `batch_size` rows (None: no such limit)."""
        return auto_settings.budget_tokens(self.train, self.train_tokens, batch_size)

    def spending(self, probe: Probe, batch_size: int, planning_seconds: float) -> Spending:
        """What `probe`'s candidate (of `batch_size` rows) would do with the time left after `planning_seconds`:
        about EVAL_SHARE of it on evaluations (at least MIN_EVALUATIONS unless they would take twice that share),
        the rest training."""
        left = max(self.seconds - planning_seconds, 0.0)
        eval_seconds = self.scored / probe.eval_tokens_per_sec
        wanted = min(MAX_EVALUATIONS, max(MIN_EVALUATIONS, EVAL_SHARE * left / eval_seconds))
        evaluations = max(1, int(min(wanted, 2 * EVAL_SHARE * left / eval_seconds)))
        tokens = probe.tokens_per_sec * max(left - evaluations * eval_seconds, 0.0)
        counted = self.counted(batch_size)
        if counted is not None:
            tokens = min(tokens, counted)
        steps = tokens / (batch_size * self.train.seq_len)
        if evaluations == 1:  # the last one only: none before the clock ends the run, however fast it goes
            return Spending(tokens, max(1, int(10 * steps)), 1, eval_seconds)
        every = steps / evaluations
        every = max(1, round(every, -1) if every >= 50 else round(every))
        return Spending(tokens, int(every), evaluations, eval_seconds)

    def learned(self, candidate: Candidate, tokens: float) -> float:
        """`tokens` trained at `candidate`'s batch, counted as tokens at the start batch (batch_worth)."""
        seq_len = self.train.seq_len
        return tokens * batch_worth(candidate.batch_size * seq_len, self.start_batch * seq_len)


class Walk:
    """The planner's way through the candidates: from the smallest shape at the start batch to the
    next larger shape, and off the CPU to a batch twice as large, whichever the rule expects to learn
    most, while it expects it to learn more than where the walk stands by MIN_GAIN with TIMING_NOISE
    against it. A candidate is timed when the walk first reaches it (`time`), unless it has more
    weights per training token than MAX_WEIGHTS_PER_TOKEN, would not fit in the device's memory, or
    the timing has taken PROBE_SHARE of the budget. Replaying it over what was timed (`replaying`)
    takes the same steps, so the choice can be remade from the measurements alone."""

    def __init__(self, config: RunConfig, budget: Budget, time: Callable[[Candidate], Probe]):
        self.budget, self.time = budget, time
        self.shape_auto = any(getattr(config.model, name) is None for name in SHAPE_FIELDS)
        self.batch_auto = config.train.batch_size is None
        self.shapes = _candidates(config.model, CANDIDATE_SHAPES)
        self.extended = [shape for shape in _candidates(config.model, EXTENDED_SHAPES) if shape not in self.shapes]
        self.start = Candidate(self.shapes[0], budget.start_batch)
        self.probes: dict[Candidate, Probe] = {}  # timed, in the order they were
        self.failed: dict[Candidate, str] = {}  # could not be trained: why
        self.not_timed: dict[Candidate, str] = {}  # not timed: why

    @classmethod
    def replaying(cls, config: RunConfig, budget: Budget, measurements: Measurements) -> Walk:
        def recorded(candidate: Candidate) -> Probe:
            if candidate in measurements.probes:
                return measurements.probes[candidate]
            raise DoesNotFit(measurements.failed.get(candidate, "not timed"))

        return cls(config, budget, recorded)

    def settle(self) -> Candidate:
        """Where the walk ends: the candidate the plan takes (the start, when the rule does not apply)."""
        current = self.start
        self.probes[current] = self.time(current)  # the smallest: a run that cannot train it cannot run
        if not self._walks():
            return current
        while True:
            timed = [c for c in self._next_to(current) if self._probe(c, current) is not None]
            better = [c for c in timed if self._gain(current, c) > MIN_GAIN]
            if not better:
                break
            current = min(better, key=self.losses().get)
        return self.start if self.outside() else current

    def losses(self, speed: float = 1.0) -> dict[Candidate, float]:
        """Each timed candidate's predicted loss, given the tokens it would learn from in the time left
        once the candidates up to it had been timed, with its timed speed times `speed`."""
        losses, seconds = {}, 0.0
        for candidate, probe in self.probes.items():
            seconds += probe.seconds
            tokens = self.budget.spending(probe, candidate.batch_size, seconds).tokens * speed
            counted = self.budget.counted(candidate.batch_size)
            tokens = self.budget.learned(candidate, min(tokens, counted) if counted is not None else tokens)
            loss = predicted_loss(candidate.shape, tokens, self.budget.train_tokens) if tokens > 0 else math.inf
            losses[candidate] = loss
        return losses

    def _gain(self, current: Candidate, larger: Candidate) -> float:
        """What `larger` is expected to learn more than `current`, with TIMING_NOISE against it."""
        return self.losses(1 + TIMING_NOISE)[current] - self.losses(1 - TIMING_NOISE)[larger]

    def outside(self) -> str | None:
        """Why the rule does not apply to this text (None: it does); see FITTED_TEXT_TOKENS."""
        tokens, (low, high) = self.budget.train_tokens, FITTED_TEXT_TOKENS
        fitted = f"the rule was fitted on {low / 1e6:.1f}M to {high / 1e6:.2f}M"
        layers, hidden, _ = self.start.shape
        default = ", ".join(
            [f"{layers} x {hidden}"] * self.shape_auto
            + [f"batch {self.start.batch_size} x {self.budget.train.seq_len}"] * self.batch_auto
            + ["the dropouts by their table"]
        )
        default = f"the default plan: {default}"
        if tokens is None:
            return f"a streamed text, of unknown size; {default}"
        if tokens < low:
            return f"a text of {tokens:,} training tokens, where {fitted}; {default}"
        if tokens > high and not self.flat():
            return f"a text of {tokens / 1e6:.1f}M training tokens, where {fitted}; {default}"
        return None

    def flat(self) -> bool:
        """Whether this device's speed is flat in the model's size, as measured (never a CPU's)."""
        if self.probes[self.start].device == "cpu":
            return False
        for batch in {c.batch_size for c in self.probes}:
            timed = [(c.shape, p) for c, p in self.probes.items() if c.batch_size == batch]
            (small, first), rest = timed[0], timed[1:]
            if any(
                lstm_weights(*shape) >= FLAT_WORK * lstm_weights(*small)
                and probe.tokens_per_sec >= FLAT_SPEED * first.tokens_per_sec
                for shape, probe in rest
            ):
                return True
        return False

    def _walks(self) -> bool:
        """Whether to walk at all: not where the text puts the plan outside the rule's range for sure."""
        tokens, (low, high) = self.budget.train_tokens, FITTED_TEXT_TOKENS
        if tokens is None or tokens < low:
            return False
        return tokens <= high or self.probes[self.start].device != "cpu"  # a larger text: off the CPU it may be flat

    def _next_to(self, current: Candidate) -> list[Candidate]:
        """The candidates one step on from `current`: the next larger shape, then a batch twice as large."""
        steps = []
        shapes = self.shapes + (self.extended if self.shape_auto and self.flat() else [])
        following = shapes.index(current.shape) + 1
        if following < len(shapes):
            steps.append(Candidate(shapes[following], current.batch_size))
        if (
            self.batch_auto
            and self.probes[self.start].device != "cpu"
            and current.batch_size < self.start.batch_size * 2**BATCH_DOUBLINGS
        ):
            steps.append(Candidate(current.shape, 2 * current.batch_size))
        return steps

    def _probe(self, candidate: Candidate, near: Candidate) -> Probe | None:
        """`candidate`'s speed, timed now if it was not yet and may be; None if it is not timed."""
        if candidate in self.probes:
            return self.probes[candidate]
        if candidate in self.failed or candidate in self.not_timed:
            return None
        why = self._why_not_timed(candidate, near)
        if why:
            self.not_timed[candidate] = why
            return None
        try:
            self.probes[candidate] = self.time(candidate)
        except DoesNotFit as error:
            self.failed[candidate] = str(error)
            return None
        return self.probes[candidate]

    def _why_not_timed(self, candidate: Candidate, near: Candidate) -> str | None:
        weights, tokens = lstm_weights(*candidate.shape), self.budget.train_tokens
        if tokens and weights > MAX_WEIGHTS_PER_TOKEN * tokens:
            return (
                f"{weights / 1e6:.1f}M weights would be {weights / tokens:.0f} per training token, more than the "
                f"{MAX_WEIGHTS_PER_TOKEN:g} the size rule was fitted up to"
            )
        probe = self.probes[near]
        if probe.peak_memory is not None and probe.free_memory is not None:
            grows = max(1.0, weights / lstm_weights(*near.shape)) * max(1.0, candidate.batch_size / near.batch_size)
            needed, free = probe.peak_memory * grows, probe.free_memory
            if needed > MEMORY_SHARE * free:
                return (
                    f"it would need about {_bytes(needed)}, more than {MEMORY_SHARE:.0%} of the "
                    f"{_bytes(free)} free on {probe.device}"
                )
        if sum(p.seconds for p in self.probes.values()) >= PROBE_SHARE * self.budget.seconds:
            return f"the timing had taken {PROBE_SHARE:.0%} of the budget"
        return None

    # ------------------------------------------------------------------------- what the plan prints

    def shape_reason(self, chosen: Candidate) -> str:
        if len(self.shapes) == 1:
            return "the sizes given"
        if self.outside():
            return "the default shape, outside the size rule's fitted range"
        timed = ", ".join(dict.fromkeys(f"{c.shape[0]}x{c.shape[1]}" for c in self.probes))
        reason = f"of {timed} timed here, the one the size rule expects to learn most in the budget"
        if any(c.shape in self.extended for c in self.probes):
            largest = self.shapes[-1]
            reason += (
                f"; {self.probes[self.start].device} trains large shapes about as fast as small ones, so "
                f"shapes beyond {largest[0]} x {largest[1]} were timed"
            )
        larger = [c for c in self._next_to(chosen) if c.shape != chosen.shape]
        return reason + (self._why_not_further(chosen, larger[0]) if larger else "")

    def batch_reason(self, chosen: Candidate) -> str:
        if self.outside():
            return "the batch the rules were measured at, outside the size rule's fitted range"
        if self.probes[self.start].device == "cpu":
            return _CPU_BATCH
        timed = ", ".join(str(b) for b in sorted({c.batch_size for c in self.probes if c.shape == chosen.shape}))
        reason = (
            f"of {timed} rows timed with {chosen.shape[0]} x {chosen.shape[1]}, the one the size rule expects to "
            f"learn most, the tokens of a larger step counted as worth less (a critical batch of "
            f"{NOISE_BATCH_TOKENS:,} tokens)"
        )
        larger = [c for c in self._next_to(chosen) if c.batch_size != chosen.batch_size]
        return reason + (self._why_not_further(chosen, larger[0]) if larger else "")

    def _why_not_further(self, chosen: Candidate, step: Candidate) -> str:
        """Why the walk did not go on from `chosen` to `step` (the next shape or batch)."""
        what = f"{step.shape[0]} x {step.shape[1]}" if step.shape != chosen.shape else f"{step.batch_size} rows"
        if step in self.probes:
            gain = self.losses()[chosen] - self.losses()[step]
            if gain <= 0:
                return ""
            return (
                f"; {what} was predicted {gain:.2g} bits/char better, but not by {MIN_GAIN:g} with its speed "
                f"{TIMING_NOISE:.0%} lower and this one's {TIMING_NOISE:.0%} higher"
            )
        why = self.failed.get(step) or self.not_timed.get(step)
        return f"; {what} not timed: {why}" if why else ""


def _auto_dropout(model: ModelConfig) -> bool:
    return model.dropout is None or model.recurrent_dropout is None


def _auto_regularization(config: RunConfig) -> bool:
    return _auto_dropout(config.model) or config.train.weight_decay is None


def _times_candidates(config: RunConfig, measure, device_type: str) -> bool:
    """Whether the plan times candidates: with a time budget, and something left to choose by it (the
    batch only off the CPU, where a larger one may pay)."""
    auto_shape = any(getattr(config.model, name) is None for name in SHAPE_FIELDS)
    auto_batch = config.train.batch_size is None and device_type != "cpu"
    something_to_plan = auto_shape or auto_batch or config.train.eval_every is None or _auto_regularization(config)
    return bool(config.train.max_minutes) and measure is not None and something_to_plan


def _candidates(model: ModelConfig, shapes) -> list[Shape]:
    """`shapes` with the sizes the user gave kept, each once, smallest first."""
    candidates = []
    for layers, hidden in shapes:
        shape = sized_shape(model, layers, hidden)
        if shape not in candidates:
            candidates.append(shape)
    return candidates


def _with_shape(model: ModelConfig, shape: Shape) -> ModelConfig:
    return dataclasses.replace(model, **dict(zip(SHAPE_FIELDS, shape)))


def _with_candidate(config: RunConfig, chosen: Candidate) -> RunConfig:
    """`config` with the shape, and the batch and learning rate where they are left to the plan."""
    train = config.train
    if train.batch_size is None:
        train = dataclasses.replace(train, batch_size=chosen.batch_size)
    if train.lr is None:
        train = dataclasses.replace(train, lr=auto_settings.learning_rate_for(chosen.batch_size))
    return dataclasses.replace(config, model=_with_shape(config.model, chosen.shape), train=train)


def sized_shape(model: ModelConfig, layers: int, hidden: int) -> tuple[int, int, int]:
    """(layers, hidden, embedding): the model's sizes where given, else these, the embedding a quarter of the hidden
    size."""
    layers = model.layers or layers
    hidden = model.hidden_size or hidden
    return layers, hidden, model.embedding_size or max(16, hidden // 4)


def _key(candidate: Candidate, start_batch: int) -> str:
    """A timed candidate's name in config.json's plan: the shape, and the batch where it is not the start batch."""
    shape = "x".join(str(size) for size in candidate.shape)
    return shape if candidate.batch_size == start_batch else f"{shape} batch {candidate.batch_size}"


def _bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"


def _spacing_reason(spending: Spending) -> str:
    if spending.evaluations == 1:
        return f"one evaluation, at the end: it takes {spending.eval_seconds:.1f} s"
    return f"about {spending.evaluations} evaluations, {spending.eval_seconds:.1f} s each"


def _measured_line(chosen: Candidate, probe: Probe, seconds: float, tokens: float, train_tokens: int | None) -> str:
    epochs = f", {tokens / train_tokens:.1f} epochs" if train_tokens else ""
    if probe.device == "cpu":
        cores = usable_cores()
        threads = f"{probe.threads} thread{'s' if probe.threads > 1 else ''}"
        where = f"{threads}, {cores} core{'s' if cores > 1 else ''} available"
    else:
        where = f"on {probe.device}"
    shape = chosen.shape
    return (
        f"measured in {seconds:.1f} s: {shape[0]} x {shape[1]} trains at {probe.tokens_per_sec:,.0f} tokens/s "
        f"({where}): about {tokens / 1e6:.1f}M tokens in the budget{epochs}"
    )
