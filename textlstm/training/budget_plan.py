"""The plan of a run with a time budget: which model shape, how many tokens it will see, how often to
evaluate, measured on this machine before anything is chosen.

With --max-minutes and the shape left at auto, each candidate shape (CANDIDATE_SHAPES, with the
sizes the user gave kept) is timed for a few real steps (speed_probe.py). The tokens it would train
on in the budget are its measured rate times the seconds left; the rule (predicted_loss) says which
shape learns most from that many tokens of a text that size. The dropouts and weight decay then
follow from the epochs of the chosen shape and its size (auto_settings.regularization_for), and the evaluations
are spaced so that they take about EVAL_SHARE of the budget. Timing (measure_for_plan) comes first;
the choice (resolve_plan) is a pure function of the settings, the corpus's size and those measurements.

Without a time budget (--max-steps or --epochs alone) the token budget is known and nothing is
timed: the shape is DEFAULT_SHAPE, since fewer tokens per step would not make the steps fewer.

The fitting runs behind the rule's constants, and its leave-one-corpus-out figures, are in
benchmarks/QUALITY.md ("The planned budget"); `python benchmarks/fit_plan.py --fit` recomputes them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from textlstm.config import AUTO, ModelConfig, RunConfig
from textlstm.hardware.device import device_name
from textlstm.hardware.threads import usable_cores
from textlstm.training import auto_settings
from textlstm.training.auto_settings import lstm_weights
from textlstm.training.speed_probe import Probe

SHAPE_FIELDS = ("layers", "hidden_size", "embedding_size")
# (layers, hidden size), smallest first: from the smallest fitted shape up. Two layers throughout:
# three learned no faster in the budgets measured (benchmarks/QUALITY.md, "Settings tried"). An
# embedding left at auto is a quarter of the hidden size, as in the fitting runs. 2 x 192, below
# the fitted range, was a candidate once: chosen for the handbook corpus in 5 minutes it scored
# 1.808 bits/char where 2 x 256 scored 1.760.
CANDIDATE_SHAPES = ((2, 256), (2, 384), (2, 512), (2, 768))
DEFAULT_SHAPE = (2, 256)

# The rule, fitted on 16 runs of benchmarks/fit_plan.py (4 corpora x 2 shapes x 2 token counts):
# validation loss (bits per character) = E(corpus) + A / N^ALPHA + B / D'^BETA, with N the LSTM's
# weights (in millions) and D' the training tokens (in millions) discounted for repetition: past the
# first epoch each further one counts less, D' = U (1 + R (1 - exp(-(D/U - 1) / R))) for D > U
# tokens of a U-token text, R from Muennighoff et al. (2023), not fitted. E(corpus) is the same for
# every shape, so the choice does not need it.
FIT_A, FIT_ALPHA, FIT_B, FIT_BETA, FIT_R = 0.1286, 0.843, 1.5062, 0.155, 15.0

EVAL_SHARE = 0.05  # of a time budget, for evaluations
MIN_EVALUATIONS, MAX_EVALUATIONS = 4, 40
PROBE_SHARE = 0.1  # of a time budget: no more shapes are timed once the timing has taken this much


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


@dataclass(frozen=True)
class Spending:
    """How one shape would spend the time left: training tokens, and evaluations every so many steps."""

    tokens: float
    eval_every: int
    evaluations: int
    eval_seconds: float  # one evaluation's


@dataclass
class Plan:
    config: RunConfig  # with the shape, dropouts, weight decay and eval_every resolved
    lines: list[str]  # what was chosen and why, one line each
    seconds: float  # what planning took, counted in the budget
    record: dict  # config.json's "plan"


Shape = tuple[int, int, int]  # (layers, hidden size, embedding size)


@dataclass(frozen=True)
class Measurements:
    """What the planner timed before choosing: the candidate shapes in the order they were timed, and
    the chosen shape again without dropout (when the dropouts are left to the plan)."""

    probes: dict[Shape, Probe] = dataclasses.field(default_factory=dict)
    bare: Probe | None = None

    @property
    def seconds(self) -> float:
        return sum(probe.seconds for probe in self.probes.values()) + (self.bare.seconds if self.bare else 0.0)


def plan_run(config: RunConfig, train_tokens: int | None, valid_tokens: int,
             measure: Callable[[ModelConfig], Probe] | None) -> Plan:
    """Measure what the plan needs on this machine (`measure` may be None without a time budget), then
    resolve the plan from those measurements."""
    measurements = measure_for_plan(config, train_tokens, valid_tokens, measure)
    return resolve_plan(config, train_tokens, valid_tokens, measurements)


def measure_for_plan(config: RunConfig, train_tokens: int | None, valid_tokens: int,
                     measure: Callable[[ModelConfig], Probe] | None) -> Measurements:
    """Time the candidate shapes, smallest first, until one predicts worse than the best so far or the
    timing has taken PROBE_SHARE of the budget; then the chosen shape without dropout, if the dropouts
    are the plan's to choose. Nothing is timed without a time budget or with nothing left to plan."""
    if not _times_shapes(config, measure):
        return Measurements()
    budget = Budget(config, train_tokens, valid_tokens)
    probes: dict[Shape, Probe] = {}
    for shape in _candidates(config.model):
        probes[shape] = measure(_with_shape(config.model, shape))
        if _timing_done(probes, budget):
            break
    bare = None
    if _auto_dropout(config.model):
        chosen, _ = _choose_shape(config.model, probes, budget)
        bare = measure(dataclasses.replace(_with_shape(config.model, chosen), dropout=0.0, recurrent_dropout=0.0))
    return Measurements(probes, bare)


def resolve_plan(config: RunConfig, train_tokens: int | None, valid_tokens: int, measurements: Measurements) -> Plan:
    """The resolved settings of a new run on `train_tokens` training tokens (None: streamed): a pure
    function of the settings, the corpus's size and what was measured."""
    model, train = config.model, config.train
    auto_shape = [name for name in SHAPE_FIELDS if getattr(model, name) is None]  # the sizes not given
    budget = Budget(config, train_tokens, valid_tokens)
    lines, record, probes = [], {}, measurements.probes
    if probes:
        shape, reason = _choose_shape(model, probes, budget)
    else:
        shape = _shape(model, *DEFAULT_SHAPE)
        reason = "no time budget to plan for: the default shape"
    config = dataclasses.replace(config, model=_with_shape(model, shape))
    if auto_shape:
        lines.append(f"model: {shape[0]} x {shape[1]}, embedding {shape[2]} ({AUTO}: {reason})")

    seconds = measurements.seconds
    tokens, spending, deciding = budget.counted, None, budget.counted
    if shape in probes:
        probe = probes[shape]
        if measurements.bare is not None:
            # The shapes were timed with dropout on. Whether the run needs it depends on the epochs it
            # would read without it, at the faster pace it would then run at.
            bare = measurements.bare
            deciding = budget.spending(bare, seconds).tokens
            needed = auto_settings.regularization_for(train_tokens, deciding, lstm_weights(*shape))
            if not (needed.dropout or needed.recurrent_dropout):
                probe = bare
        spending = budget.spending(probe, seconds)
        tokens = spending.tokens
        deciding = deciding or tokens
        lines.insert(0, _measured_line(shape, probe, seconds, tokens, train_tokens))
        record = {"seconds": round(seconds, 2), "cores": usable_cores(), "device": probe.device,
                  "device_name": device_name(probe.device), "chosen": list(shape), "tokens": round(tokens),
                  "tokens_per_sec_of_chosen": round(probe.tokens_per_sec),
                  "epochs": round(tokens / train_tokens, 2) if train_tokens else None,
                  "tokens_per_sec": {f"{s[0]}x{s[1]}x{s[2]}": round(p.tokens_per_sec) for s, p in probes.items()}}
    config, chosen = auto_settings.resolve_regularization(config, train_tokens, deciding)
    if chosen:
        lines.append(chosen[:-1] + ", at the pace without dropout)" if deciding != tokens else chosen)
    if config.train.eval_every is None:
        if spending:
            eval_every, why = spending.eval_every, _spacing_reason(spending)
        else:
            eval_every, why = 500, "no time budget: every 500 steps"
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, eval_every=eval_every))
        lines.append(f"evaluate every {eval_every:,} steps ({AUTO}: {why})")
    if record:
        config = dataclasses.replace(config, plan=record)
    return Plan(config, lines, seconds, record)


class Budget:
    """A run's limits: the seconds of its time budget, and the tokens its step and epoch limits count."""

    def __init__(self, config: RunConfig, train_tokens: int | None, valid_tokens: int):
        train = config.train
        self.train_tokens = train_tokens
        self.seconds = (train.max_minutes or 0) * 60
        self.counted = auto_settings.budget_tokens(train, train_tokens)  # None: no step or epoch limit
        self.scored = min(valid_tokens, train.eval_tokens)  # each evaluation's tokens
        self.tokens_per_step = train.batch_size * train.seq_len

    def spending(self, probe: Probe, planning_seconds: float) -> Spending:
        """What `probe`'s shape would do with the time left after `planning_seconds`: about EVAL_SHARE
        of it on evaluations (at least MIN_EVALUATIONS unless they would take twice that share), the rest training."""
        left = max(self.seconds - planning_seconds, 0.0)
        eval_seconds = self.scored / probe.eval_tokens_per_sec
        wanted = min(MAX_EVALUATIONS, max(MIN_EVALUATIONS, EVAL_SHARE * left / eval_seconds))
        evaluations = max(1, int(min(wanted, 2 * EVAL_SHARE * left / eval_seconds)))
        tokens = probe.tokens_per_sec * max(left - evaluations * eval_seconds, 0.0)
        if self.counted is not None:
            tokens = min(tokens, self.counted)
        steps = tokens / self.tokens_per_step
        if evaluations == 1:  # the last one only: none before the clock ends the run, however fast it goes
            return Spending(tokens, max(1, int(10 * steps)), 1, eval_seconds)
        every = steps / evaluations
        every = max(1, round(every, -1) if every >= 50 else round(every))
        return Spending(tokens, int(every), evaluations, eval_seconds)


def _auto_dropout(model: ModelConfig) -> bool:
    return model.dropout is None or model.recurrent_dropout is None


def _auto_regularization(config: RunConfig) -> bool:
    return _auto_dropout(config.model) or config.train.weight_decay is None


def _times_shapes(config: RunConfig, measure) -> bool:
    """Whether the plan times shapes: with a time budget, and something left to choose by it."""
    auto_shape = any(getattr(config.model, name) is None for name in SHAPE_FIELDS)
    something_to_plan = auto_shape or config.train.eval_every is None or _auto_regularization(config)
    return bool(config.train.max_minutes) and measure is not None and something_to_plan


def _candidates(model: ModelConfig) -> list[Shape]:
    """CANDIDATE_SHAPES with the sizes the user gave kept, each once, smallest first."""
    candidates = []
    for layers, hidden in CANDIDATE_SHAPES:
        shape = _shape(model, layers, hidden)
        if shape not in candidates:
            candidates.append(shape)
    return candidates


def _predicted_losses(probes: dict[Shape, Probe], budget: Budget) -> dict[Shape, float]:
    """Each timed shape's predicted loss, given the tokens it would train on in the time left once the
    shapes up to it had been timed."""
    losses, seconds = {}, 0.0
    for shape, probe in probes.items():
        seconds += probe.seconds
        tokens = budget.spending(probe, seconds).tokens
        losses[shape] = predicted_loss(shape, tokens, budget.train_tokens) if tokens > 0 else math.inf
    return losses


def _timing_done(probes: dict[Shape, Probe], budget: Budget) -> bool:
    """Time no more shapes: the last one predicts worse than the best before it (the larger shapes are
    slower still), or the timing has taken PROBE_SHARE of the budget."""
    losses = list(_predicted_losses(probes, budget).values())
    if len(losses) >= 2 and losses[-1] >= min(losses[:-1]):
        return True
    return sum(probe.seconds for probe in probes.values()) >= PROBE_SHARE * budget.seconds


def _choose_shape(model: ModelConfig, probes: dict[Shape, Probe], budget: Budget) -> tuple[Shape, str]:
    """The timed shape with the lowest predicted loss (the first of equals), and why."""
    losses = _predicted_losses(probes, budget)
    best = min(losses, key=losses.get)
    if len(_candidates(model)) == 1:
        return best, "the sizes given"
    measured = ", ".join(f"{s[0]}x{s[1]}" for s in probes)
    return best, f"of {measured} timed here, the one the size rule expects to learn most in the budget"


def _with_shape(model: ModelConfig, shape: Shape) -> ModelConfig:
    return dataclasses.replace(model, **dict(zip(SHAPE_FIELDS, shape)))


def _shape(model: ModelConfig, layers: int, hidden: int) -> tuple[int, int, int]:
    """(layers, hidden, embedding): the model's sizes where given, else these, the embedding a quarter of the hidden size."""
    layers = model.layers or layers
    hidden = model.hidden_size or hidden
    return layers, hidden, model.embedding_size or max(16, hidden // 4)


def _spacing_reason(spending: Spending) -> str:
    if spending.evaluations == 1:
        return f"one evaluation, at the end: it takes {spending.eval_seconds:.1f} s"
    return f"about {spending.evaluations} evaluations, {spending.eval_seconds:.1f} s each"


def _measured_line(shape, probe: Probe, seconds: float, tokens: float, train_tokens: int | None) -> str:
    epochs = f", {tokens / train_tokens:.1f} epochs" if train_tokens else ""
    if probe.device == "cpu":
        cores = usable_cores()
        where = f"{probe.threads} thread{'s' if probe.threads > 1 else ''}, {cores} core{'s' if cores > 1 else ''} available"
    else:
        where = f"on {probe.device}"
    return (f"measured in {seconds:.1f} s: {shape[0]} x {shape[1]} trains at {probe.tokens_per_sec:,.0f} tokens/s "
            f"({where}): about {tokens / 1e6:.1f}M tokens in the budget{epochs}")
