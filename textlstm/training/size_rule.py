"""The size rule: the validation loss a model shape is expected to reach from so many training tokens of
a text of a given size, fitted on runs over several corpora, and the range of texts it was fitted on.

The planner (plan_walk.py, budget_plan.py) compares candidates by it. The fitting runs behind the
constants, and their leave-one-corpus-out figures, are in benchmarks/experiments/e2026_12_02_size_rule;
`python -m benchmarks.experiments.e2026_12_02_size_rule.fit_plan --fit` recomputes them.
"""

from __future__ import annotations

import math

from textlstm.training.auto_settings import lstm_weights

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
# For a text outside these sizes the plan is the default one (plan_walk.DEFAULT_SHAPE,
# auto_settings.TUNED_BATCH, the dropout table), said in a plan line, with one exception: a larger text on a device
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
# What a token of a larger batch teaches: the tokens of a step of B tokens count as
# (1 + B0 / NOISE_BATCH_TOKENS) / (1 + B / NOISE_BATCH_TOKENS) of a start batch B0's, the steps-for-tokens
# trade of McCandlish et al., "An Empirical Model of Large-Batch Training" (2018), with its critical
# batch taken as the tuned 16 x 64 tokens: a batch twice as large must train 1.5 times the tokens a
# second to learn as much.
NOISE_BATCH_TOKENS = 16 * 64


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
