"""The plan of a run with a time budget: which model shape and batch, how many tokens it will see, how
often to evaluate, measured on this machine before anything is chosen.

With --max-minutes and the shape or batch left at auto, the candidates a Walk reaches (plan_walk.py)
are timed for a few real steps each (speed_probe.py): the smallest shape at the batch the rules were
measured at first, then larger shapes, and off the CPU larger batches, while the size rule
(size_rule.py) expects each step to learn more. The tokens a candidate would train on in the budget are
its measured rate times the seconds left; the rule says which learns most from that many tokens of a
text that size. The learning rate follows the batch (auto_settings.learning_rate_for), the dropouts and
weight decay the epochs of the chosen shape and its size (auto_settings.regularization_for), and the
evaluations are spaced so that they take about plan_walk.EVAL_SHARE of the budget. Timing (measure_for_plan) comes
first; the choice (resolve_plan) is a pure function of the settings, the corpus's size and those
measurements.

Where the rule was not fitted the plan says so and makes the default plan (DEFAULT_SHAPE at the
tuned batch and rate, the dropouts by their table), except where a principled bound takes over
(see size_rule.FITTED_TEXT_TOKENS): a larger text on a device whose speed is flat in the model's size
(a GPU) keeps the walk, bounded by the weights per training token (size_rule.MAX_WEIGHTS_PER_TOKEN) and the
device's memory.

Without a time budget (--max-steps or --epochs alone) the token budget is known and nothing is
timed: the shape is DEFAULT_SHAPE and the batch TUNED_BATCH, since fewer tokens per step would not
make the steps fewer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from textlstm.config import AUTO, ModelConfig, RunConfig
from textlstm.hardware.device import device_name
from textlstm.hardware.threads import usable_cores
from textlstm.training import auto_settings
from textlstm.training.auto_settings import lstm_weights
from textlstm.training.plan_walk import (
    CPU_BATCH,
    DEFAULT_SHAPE,
    SHAPE_FIELDS,
    Budget,
    Candidate,
    Shape,
    Spending,
    Walk,
    sized_shape,
)
from textlstm.training.speed_probe import Probe


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
        walk = Walk.replaying(config, budget, measurements.probes, measurements.failed)
        chosen = walk.settle()
        outside, shape_reason, batch_reason = walk.outside(), walk.shape_reason(chosen), walk.batch_reason(chosen)
    else:
        chosen = Candidate(sized_shape(model, *DEFAULT_SHAPE), budget.start_batch)
        outside, shape_reason = None, "no time budget to plan for: the default shape"
        batch_reason = (
            CPU_BATCH
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


def _key(candidate: Candidate, start_batch: int) -> str:
    """A timed candidate's name in config.json's plan: the shape, and the batch where it is not the start batch."""
    shape = "x".join(str(size) for size in candidate.shape)
    return shape if candidate.batch_size == start_batch else f"{shape} batch {candidate.batch_size}"


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
