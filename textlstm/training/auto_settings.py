"""The settings `textlstm train` chooses itself when they are left at "auto", each by one rule, once the
training text is known (the tokenizer is chosen before, by tokenizer_choice.py):

- `regularization_for(train_tokens, budget, weights)`: dropout, recurrent dropout, weight decay
  (REGULARIZATION_TABLE), from the epochs in the run's budget weighed by the model's size.
- `learning_rate_for(batch_size)`: the learning rate, from the batch (the batch itself is planned
  with the shape, budget_plan.py).

`budget` is the tokens the run will train on: counted from its step and epoch limits
(`budget_tokens`), or for a time budget measured by the planner (budget_plan.py). The choice depends only on the data
and the settings, so every process of a distributed run makes the same one. The resolved values are
what the run's config.json records: --resume, eval and generate never see "auto".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from textlstm.config import AUTO, ModelConfig, RunConfig, TrainConfig
from textlstm.hardware.threads import lstm_work_per_step


def budget_tokens(train: TrainConfig, train_tokens: int | None, batch_size: int | None = None) -> float | None:
    """Tokens the run will train on as its step and epoch limits count them: --max-steps counts steps x
    batch-size x seq-len (`batch_size` rows where the batch is the plan's to choose, else --batch-size,
    else TUNED_BATCH), --epochs counts passes over `train_tokens`. A time budget is not counted here: the
    planner measures what it buys (budget_plan.py). None: no limit can be counted."""
    limits = []
    if train.max_steps:
        limits.append(train.max_steps * (batch_size or train.batch_size or TUNED_BATCH) * train.seq_len)
    if train.epochs and train_tokens:
        limits.append(train.epochs * train_tokens)
    return min(limits) if limits else None


# ----------------------------------------------------------------------------- batch and learning rate

# The batch and learning rate that every measurement behind the rules here and in the planner (size_rule.py,
# plan_walk.py) was made at: 16 rows of --seq-len 64 tokens, AdamW at 4e-3, which learned more in the same
# minutes on a CPU than larger batches (benchmarks/experiments/e2026_11_22_tinyshakespeare_settings,
# e2026_11_25_default_run).
TUNED_BATCH, TUNED_LR = 16, 4e-3
# --lr auto for B rows: TUNED_LR x sqrt(B / TUNED_BATCH) above TUNED_BATCH rows, the square-root rule for
# Adam (the noise of a gradient averaged over B rows falls as 1 / sqrt(B); Malladi et al., "On the SDEs and
# Scaling Rules for Adaptive Gradient Algorithms", 2022), at most LR_CAP: twice the tuned rate (64 rows and
# more), since no rate above the tuned one was measured. At TUNED_BATCH rows and fewer, TUNED_LR itself:
# smaller batches were not measured either, and --lr did not follow --batch-size before.
LR_CAP = 8e-3


def learning_rate_for(batch_size: int) -> float:
    """--lr auto for a batch of `batch_size` rows (all processes together), to two significant digits."""
    return float(f"{min(LR_CAP, TUNED_LR * math.sqrt(max(batch_size, TUNED_BATCH) / TUNED_BATCH)):.2g}")


def learning_rate_reason(batch_size: int) -> str:
    """Why learning_rate_for(batch_size) is what it is, as the plan prints it."""
    if batch_size <= TUNED_BATCH:
        return f"the rate the rules were measured at, with {TUNED_BATCH} rows"
    scaled = TUNED_LR * math.sqrt(batch_size / TUNED_BATCH)
    rule = (
        f"{TUNED_LR:g} x sqrt({batch_size} / {TUNED_BATCH}), the square-root rule from the rate measured at "
        f"{TUNED_BATCH} rows"
    )
    return rule if scaled <= LR_CAP else f"{rule}, capped at {LR_CAP:g}"


# ----------------------------------------------------------------------------- dropout and weight decay


@dataclass(frozen=True)
class Regularization:
    dropout: float
    recurrent_dropout: float
    weight_decay: float
    reason: str  # shown as "dropout 0.1, recurrent dropout 0.1 (auto: REASON)"


# The measure the table is read by: the expected epochs E (budget tokens / training tokens U) weighed
# by the model's size against the text's, W = E x N / U, N the LSTM's weights. The same epochs
# overfit a larger model, or a smaller text, sooner. The first row whose bound W does not exceed
# applies. Each value won measured comparisons, and each bound lies between the W where the rows on
# either side won (benchmarks/experiments/e2026_12_03_dropout_by_weights_per_token: every comparison with
# its W, and why W weighs the epochs by N / U and not by its square root, as this table did before).
#
# Weight decay (AdamW's, decoupled, on the weight matrices) follows the same W: 0.1 against 0.01, the
# plans otherwise the same, won where a run reads its text many times for its size and lost where a run
# of a few epochs still underfits (benchmarks/experiments/e2026_12_03_weight_decay_by_w).
REGULARIZATION_TABLE = (
    # (W at most, dropout, recurrent dropout, weight decay)
    (3.5, 0.0, 0.0, 0.01),
    (12.0, 0.1, 0.1, 0.01),
    (36.0, 0.1, 0.1, 0.1),
    (math.inf, 0.3, 0.1, 0.1),
)


def lstm_weights(layers: int, hidden: int, embedding: int) -> int:
    """The LSTM's input and recurrent weights (biases left out)."""
    return lstm_work_per_step(embedding, hidden, layers, 1)


def weighted_epochs(train_tokens: int, budget: float, weights: int) -> float:
    """W of REGULARIZATION_TABLE: the epochs in the budget, times the weights per training token."""
    return budget / train_tokens * weights / train_tokens


def regularization_for(train_tokens: int | None, budget: float | None, weights: int) -> Regularization:
    """Dropout, recurrent dropout and weight decay for a model of `weights` LSTM weights trained on
    `train_tokens` training tokens (None: streamed, unknown) with `budget` training tokens (see
    budget_tokens). A run whose text or budget cannot be counted is taken to see its text at most
    once with a model no larger than it (W <= 1)."""
    if not train_tokens or budget is None:
        measure, reason = 0.0, "a training text or budget of unknown size, taken as at most one epoch"
    else:
        measure = weighted_epochs(train_tokens, budget, weights)
        reason = (
            f"about {_epochs(budget / train_tokens)} of {_millions(train_tokens)} tokens in the budget "
            f"for {_millions(weights)} weights: {measure:.3g} weighted epochs"
        )
    dropout, recurrent, decay = next(row[1:] for row in REGULARIZATION_TABLE if measure <= row[0])
    return Regularization(dropout, recurrent, decay, reason)


# ----------------------------------------------------------------------------- applying them to a run


def resolve_regularization(
    config: RunConfig, train_tokens: int | None, budget: float | None
) -> tuple[RunConfig, str | None]:
    """`config` with its "auto" dropouts and weight decay (None) replaced by regularization_for's
    values for `budget` training tokens, and a line saying what was chosen and why (None when
    nothing was auto)."""
    model, train = config.model, config.train
    auto = [
        name
        for name, value in (
            ("dropout", model.dropout),
            ("recurrent_dropout", model.recurrent_dropout),
            ("weight_decay", train.weight_decay),
        )
        if value is None
    ]
    if not auto:
        return config, None
    chosen = regularization_for(train_tokens, budget, model_weights(model))
    values = {name: getattr(chosen, name) for name in auto}
    model = dataclasses.replace(model, **{n: v for n, v in values.items() if n != "weight_decay"})
    train = dataclasses.replace(train, **{n: v for n, v in values.items() if n == "weight_decay"})
    shown = ", ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in values.items())
    return dataclasses.replace(config, model=model, train=train), f"{shown} ({AUTO}: {chosen.reason})"


def model_weights(model: ModelConfig) -> int:
    """lstm_weights of a model whose sizes are resolved."""
    return lstm_weights(model.layers, model.hidden_size, model.embedding_size)


def _epochs(epochs: float) -> str:
    if epochs < 1:
        return f"{epochs:.2g} of an epoch"
    count = f"{epochs:.0f}" if epochs >= 10 else f"{epochs:.2g}"
    return f"{count} epoch" + ("" if count == "1" else "s")


def _millions(tokens: int) -> str:
    return f"{tokens / 1e6:,.1f}M" if tokens >= 100_000 else f"{tokens:,}"
