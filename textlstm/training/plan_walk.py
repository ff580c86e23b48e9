"""The planner's way through the candidates of a time budget (a model shape and a batch), and the limits
it spends them against.

A Walk starts from the smallest shape at the batch the rules were measured at (TUNED_BATCH rows) and
goes to the next larger shape, and off the CPU to a batch twice as large, while the size rule
(size_rule.py) expects the step to learn at least MIN_GAIN more. A candidate is timed for a few real
steps (speed_probe.py) when the walk first reaches it; replaying the walk over what was timed takes the
same steps, so the plan (budget_plan.py) can be remade from the measurements alone. The Budget says
how a candidate would spend the time left: the tokens it trains on and how often it is evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from textlstm.config import ModelConfig, RunConfig
from textlstm.training import auto_settings
from textlstm.training.auto_settings import TUNED_BATCH, lstm_weights
from textlstm.training.size_rule import (
    FITTED_TEXT_TOKENS,
    MAX_WEIGHTS_PER_TOKEN,
    NOISE_BATCH_TOKENS,
    batch_worth,
    predicted_loss,
)
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

# Stability: the walk takes a larger shape or batch only where the size rule expects it to learn at least
# MIN_GAIN bits per character more even with its timed speed TIMING_NOISE lower and the current one's as much
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
# processes) doubling, at most BATCH_DOUBLINGS times, a larger step's tokens counted as worth less
# (size_rule.batch_worth). On a CPU a batch twice as large trained fewer tokens a second than the 1.5
# times it takes to learn as much (benchmarks/experiments/e2026_11_25_two_threads, 16 x 64 against
# 32 x 64), and 32 x 128 learned less than 16 x 128 from the same tokens in 2-minute runs
# (benchmarks/experiments/e2026_11_22_tinyshakespeare_settings), so a CPU keeps the tuned batch and is
# not timed at others.
BATCH_DOUBLINGS = 6
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


@dataclass(frozen=True)
class Spending:
    """How one candidate would spend the time left: training tokens, and evaluations every so many steps."""

    tokens: float
    eval_every: int
    evaluations: int
    eval_seconds: float  # one evaluation's


CPU_BATCH = (
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
    def replaying(
        cls, config: RunConfig, budget: Budget, probes: dict[Candidate, Probe], failed: dict[Candidate, str]
    ) -> Walk:
        """The walk over what was timed (`probes`) and what could not be trained (`failed`, with why)."""

        def recorded(candidate: Candidate) -> Probe:
            if candidate in probes:
                return probes[candidate]
            raise DoesNotFit(failed.get(candidate, "not timed"))

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
            return CPU_BATCH
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


def _candidates(model: ModelConfig, shapes) -> list[Shape]:
    """`shapes` with the sizes the user gave kept, each once, smallest first."""
    candidates = []
    for layers, hidden in shapes:
        shape = sized_shape(model, layers, hidden)
        if shape not in candidates:
            candidates.append(shape)
    return candidates


def sized_shape(model: ModelConfig, layers: int, hidden: int) -> tuple[int, int, int]:
    """(layers, hidden, embedding): the model's sizes where given, else these, the embedding a quarter of the hidden
    size."""
    layers = model.layers or layers
    hidden = model.hidden_size or hidden
    return layers, hidden, model.embedding_size or max(16, hidden // 4)


def _bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.0f} MiB"
