"""Loss, perplexity and bits per token/character/byte of a language model on held-out text.

    from textlstm.evaluation.scoring import evaluate_checkpoint
    result = evaluate_checkpoint()                       # newest checkpoint, its own validation text
    result = evaluate_checkpoint(
        "checkpoints/run", dataset="wikitext", dataset_config="wikitext-2-raw-v1", split="test"
    )
    print(result.perplexity, result.bits_per_char)

`evaluate_checkpoint` (behind `textlstm eval`) loads a checkpoint and the text to score;
`evaluate_split` (also called by training) scores tokenized ids.

A split is scored as one stream. The ids are `EOT text ... EOT`; every id after the first is
scored exactly once, the first one conditioned on the start state. To use a batch, the stream is
cut into `batch_size` parts that are scored side by side; each part after the first is preceded
by a burn-in: the `burn_in` ids before it are run through the LSTM (not scored) so its state
carries the text's recent context, as it would if the whole stream were scored in one row. Then
every part's start state is checked against the state the part before it ended in, and parts that
started wrong are scored again, so the result is the one-row result (to float rounding) whatever
the batch size, the chunk length or the burn-in, as long as a memory cell saturated at a part's
start stays saturated (see `_stale_parts`).

Per-token figures depend on the tokenizer; bits per character and per byte of the same text do not,
so they compare char, word and BPE models.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from textlstm.config import DataConfig
from textlstm.data.prepare import prepare
from textlstm.data.token_ids import SplitInfo
from textlstm.errors import TextlstmError
from textlstm.evaluation.dynamic import DEFAULT_DECAY, DEFAULT_LR, score_dynamic
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import autocast, training_precision
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.checkpoint import find_latest_checkpoint, load_checkpoint
from textlstm.runs.hub import resolve_checkpoint
from textlstm.tokens import EOT_ID, PAD_ID

LN2 = math.log(2)
# The burn-in only has to be long enough that the check in `score_stream` rarely finds a stale part:
# a longer one costs time up front, a shorter one a second pass. A char LSTM trained 10 minutes on
# tiny Shakespeare keeps a few cells for over 512 steps: with 1024, 6 of 32 parts are scored again,
# with 512 all of them (its burn-in-only loss is already within 1e-6 of one row either way).
DEFAULT_BURN_IN = 1024
# How close a part's start state must be to the end state of the part before: well above float32
# rounding and far below anything the loss notices, or for bfloat16 (8 bits of mantissa) above the
# ~1e-2 by which the same row run at two batch shapes differs; float16 has 11 bits, 8 times finer.
STATE_TOLERANCE = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}


@dataclass
class EvalResult:
    loss_sum: float  # nats, summed over scored tokens
    tokens: int
    chars: int | None  # None when only part of the split was scored
    bytes: int | None
    seconds: float  # wall time of the scoring
    checkpoint: str | None = None  # what was evaluated, when known
    text: str | None = None
    dynamic: dict | None = None  # with dynamic evaluation, its settings (lr, decay, seq_len); None when static

    @property
    def loss(self) -> float:
        """Mean nats per token (NaN when nothing was scored)."""
        return self.loss_sum / self.tokens if self.tokens else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bits_per_token(self) -> float:
        return self.loss / LN2

    @property
    def nats_per_char(self) -> float | None:
        return self.loss_sum / self.chars if self.chars else None

    @property
    def bits_per_char(self) -> float | None:
        return self.loss_sum / LN2 / self.chars if self.chars else None

    @property
    def bits_per_byte(self) -> float | None:
        return self.loss_sum / LN2 / self.bytes if self.bytes else None

    def as_dict(self) -> dict:
        record = asdict(self)
        for name in ("loss", "perplexity", "bits_per_token", "nats_per_char", "bits_per_char", "bits_per_byte"):
            record[name] = getattr(self, name)
        return record


def evaluate_checkpoint(
    checkpoint: str | Path | None = None,
    *,
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str | None = None,
    text_column: str | None = None,
    batch_size: int = 32,
    seq_len: int = 256,
    device: str = "auto",
    precision: str = "float32",
    dynamic: bool = False,
    dynamic_lr: float = DEFAULT_LR,
    dynamic_decay: float = DEFAULT_DECAY,
) -> EvalResult:
    """Loss, perplexity and bits per token/char/byte of a checkpoint on one split of text.

    checkpoint: a checkpoint folder or "hf://USER/NAME[@REVISION]"; default the newest folder under ./checkpoints.
    dataset: any form `textlstm train --dataset` accepts; default the corpus the checkpoint was trained on.
    split: the split to score, whole; default the validation text training held out.
    The text is tokenized with the checkpoint's own tokenizer. The result does not depend on
    batch_size or seq_len (they only trade memory for speed). precision "bfloat16" runs the model
    under bfloat16 autocast: faster, with a loss that differs in about the third significant digit;
    "float16" under float16 autocast, for GPUs without bfloat16; "auto" as `--precision auto`.
    dynamic: score with dynamic evaluation (`textlstm.evaluation.dynamic`): one row, `seq_len` ids per
    segment, each scored and then learnt from with SGD at `dynamic_lr`, decaying toward the trained
    weights by `dynamic_decay`; then the result does depend on seq_len. The checkpoint is not changed.
    """
    folder = resolve_checkpoint(checkpoint) if checkpoint is not None else find_latest_checkpoint()
    device = resolve_device(device)
    precision = training_precision(precision, device)  # auto: the precision training would choose here
    model, tokenizer, config = load_checkpoint(folder, device=device)
    if dynamic and config.data.batching == "documents":
        raise TextlstmError("--dynamic scores the text as one stream; this model was trained with --batching documents")
    data, what = _text_to_score(config.data, dataset, dataset_config, split, text_column)
    prepared = prepare(data, tokenizer, splits=("valid",))
    held_out = prepared.splits["valid"]
    if dynamic:
        start = time.perf_counter()
        loss_sum, tokens = score_dynamic(
            model, held_out.ids, seq_len, dynamic_lr, dynamic_decay, device=device, precision=precision
        )
        result = EvalResult(
            loss_sum,
            tokens,
            held_out.info.chars,
            held_out.info.bytes,
            time.perf_counter() - start,
            dynamic={"lr": dynamic_lr, "decay": dynamic_decay, "seq_len": seq_len},
        )
    else:
        result = evaluate_split(
            model,
            held_out.ids,
            held_out.info,
            batch_size=batch_size,
            seq_len=seq_len,
            device=device,
            precision=precision,
            documents=config.data.batching == "documents",
        )
    return dataclasses.replace(result, checkpoint=str(folder), text=f"{what}, from {prepared.corpus.source}")


def _text_to_score(
    trained_on: DataConfig, dataset: str | None, dataset_config: str | None, split: str | None, text_column: str | None
) -> tuple[DataConfig, str]:
    """Data settings whose validation split is the text to score, and a description of that text."""
    if dataset is None:
        data = dataclasses.replace(
            trained_on,
            dataset_config=dataset_config or trained_on.dataset_config,
            text_column=text_column or trained_on.text_column,
        )
        what = "the validation text used in training"
    else:
        defaults = DataConfig()
        data = dataclasses.replace(
            trained_on,
            dataset=dataset,
            dataset_config=dataset_config,
            text_column=text_column,
            split=defaults.split,
            valid_split=defaults.valid_split,
        )
        what = "the held-out validation text"
    if split is None:
        return data, what
    # The named split, whole: as both "train" and "valid" so that nothing of it is held out.
    return dataclasses.replace(data, split=split, valid_split=split), f"split '{split}'"


def evaluate_split(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    info: SplitInfo | None = None,
    batch_size: int = 32,
    seq_len: int = 256,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
    burn_in: int = DEFAULT_BURN_IN,
    precision: str = "float32",
    documents: bool = False,
) -> EvalResult:
    """Score a split; characters and bytes are reported when the whole split is scored.

    documents: score each document from a zero state (`score_documents`), as a model trained with
    `--batching documents` read them; else the split is one stream (`score_stream`).
    """
    start = time.perf_counter()
    if documents:
        loss_sum, tokens = score_documents(model, ids, batch_size, seq_len, max_tokens, device, precision)
    else:
        loss_sum, tokens = score_stream(model, ids, batch_size, seq_len, max_tokens, burn_in, device, precision)
    whole = info is not None and tokens == info.scored_tokens
    return EvalResult(
        loss_sum=loss_sum,
        tokens=tokens,
        chars=info.chars if whole else None,
        bytes=info.bytes if whole else None,
        seconds=time.perf_counter() - start,
    )


@torch.inference_mode()
def score_stream(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    batch_size: int = 32,
    seq_len: int = 256,
    max_tokens: int | None = None,
    burn_in: int = DEFAULT_BURN_IN,
    device: torch.device | str = "cpu",
    precision: str = "float32",
) -> tuple[float, int]:
    """Summed loss (nats) and count of the first `max_tokens` scored ids of `ids` (all by default).

    The parts start from burned-in states, a guess; then each part's start state is checked
    against the state the part before it ended in, and the parts where they differ are scored
    again from that end state, until every start state is the one the stream would carry (for
    saturated cells, see `_stale_parts`). So the result is the one-row result (to float rounding)
    whatever the model's memory; a long enough burn-in only saves the rescoring. In bfloat16 or
    float16 the states are compared to that precision's own rounding, so "exact" means to it.
    """
    total = max(0, len(ids) - 1)
    if max_tokens is not None:
        total = min(total, max(0, max_tokens))
    if total == 0:
        return 0.0, 0
    # Positions are input indices: position i feeds ids[i] and scores ids[i + 1].
    part_len = -(-total // max(1, min(batch_size, total)))
    parts = [(start, min(start + part_len, total)) for start in range(0, total, part_len)]
    was_training, cudnn_tf32 = model.training, torch.backends.cudnn.allow_tf32
    model.eval()
    # cuDNN's LSTM in TF32 would make the same row differ by batch shape more than the check allows.
    torch.backends.cudnn.allow_tf32 = False
    tolerance = STATE_TOLERANCE[precision]
    try:
        with autocast(precision, device):
            starts = _burned_in_state(model, ids, [start for start, _ in parts], burn_in, device)
            losses, ends = _score_parts(model, ids, parts, starts, seq_len)
            # Part k is right after round k at the latest, so this ends within len(parts) - 1 rounds.
            while len(stale := _stale_parts(starts, ends, tolerance)):
                for start, end in zip(starts, ends):
                    start[:, stale] = end[:, stale - 1]
                chosen = [parts[row] for row in stale.tolist()]
                losses[stale], new_ends = _score_parts(model, ids, chosen, _rows(starts, stale), seq_len)
                for end, new_end in zip(ends, new_ends):
                    end[:, stale] = new_end
    finally:
        model.train(was_training)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    return float(losses.sum()), total


def _score_parts(model: LSTMLanguageModel, ids: np.ndarray, parts: list[tuple[int, int]], state, seq_len: int):
    """Summed loss of each part (float64 [parts]) scored side by side from `state`, and the state each ends in."""
    part_len = max(end - start for start, end in parts)
    device = state[0].device
    losses = torch.zeros(len(parts), dtype=torch.float64, device=device)
    for offset in range(0, part_len, seq_len):
        inputs, targets = _chunk(ids, parts, offset, min(seq_len, part_len - offset))
        logits, state = model(inputs.to(device), state)
        nats = F.cross_entropy(
            logits.transpose(1, 2).float(), targets.to(device), ignore_index=PAD_ID, reduction="none"
        )
        losses += nats.double().sum(dim=1)
    return losses, (state[0].float(), state[1].float())  # float32 also under bfloat16 autocast


def _stale_parts(starts, ends, tolerance: float = 1e-5) -> torch.Tensor:
    """Indices of the parts (after the first) whose start state is not the end state of the part before.

    States are compared as the LSTM's output sees them: h, and c through tanh. Trained models grow
    counter-like cells to |c| in the hundreds whose raw value depends on the whole history but
    whose tanh is exactly +-1. This assumes such a saturated cell stays saturated: two of them
    (c=20 and c=50) pass as the same, though a forget gate that later closes would tell them apart.
    Comparing c itself (relative to its size) is exact but costs a lot: on a char model trained 300
    steps on tiny Shakespeare (batch 32, burn-in 1024) 13,232 of 16,384 cells had |c| > 10, the
    exact check scored 90 parts again in 3 rounds, 4.6 times the time (more than one row takes;
    measured on a busy machine), for the same loss to 7 digits.
    """
    (h_start, c_start), (h_end, c_end) = starts, ends
    same = torch.ones(h_start.shape[1] - 1, dtype=torch.bool, device=h_start.device)
    for start, end in ((h_start, h_end), (c_start.tanh(), c_end.tanh())):  # [layers, parts, hidden]
        same &= ((start[:, 1:] - end[:, :-1]).abs() <= tolerance).all(dim=2).all(dim=0)
    return torch.nonzero(~same).flatten() + 1


def _rows(state, index: torch.Tensor):
    return tuple(tensor[:, index].contiguous() for tensor in state)


def _chunk(ids: np.ndarray, parts: list[tuple[int, int]], offset: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets [parts, width] for positions offset..offset+width of each part; padding past a part's end.

    Padded inputs past a part's end disturb that row's state, but the row has nothing left to score,
    and only the last part, whose end state nothing reads, can be shorter than the others.
    """
    inputs = np.full((len(parts), width), PAD_ID, dtype=np.int64)
    targets = np.full((len(parts), width), PAD_ID, dtype=np.int64)
    for row, (start, end) in enumerate(parts):
        begin = start + offset
        n = max(0, min(width, end - begin))
        inputs[row, :n] = ids[begin : begin + n]
        targets[row, :n] = ids[begin + 1 : begin + n + 1]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def _burned_in_state(model: LSTMLanguageModel, ids: np.ndarray, starts: list[int], burn_in: int, device):
    """Start state of each part: zero for the first, else the state after reading the `burn_in` ids before it."""
    state = model.initial_state(len(starts), device)
    rows = [row for row, start in enumerate(starts) if start > 0 and burn_in > 0]
    if not rows:
        return state
    lengths = [min(burn_in, starts[row]) for row in rows]
    block = np.full((len(rows), max(lengths)), PAD_ID, dtype=np.int64)
    for i, (row, length) in enumerate(zip(rows, lengths)):
        block[i, :length] = ids[starts[row] - length : starts[row]]
    # Equal lengths (every part but the first starts at least burn_in ids in) take the dense LSTM
    # kernel: the packed one, for rows of different lengths, runs at about half its speed.
    uneven = torch.tensor(lengths) if len(set(lengths)) > 1 else None
    _, (h, c) = model.hidden_states(torch.from_numpy(block).to(device), lengths=uneven)
    index = torch.tensor(rows, device=device)
    state[0][:, index] = h.to(state[0].dtype)  # bfloat16 under autocast
    state[1][:, index] = c.to(state[1].dtype)
    return state


@torch.inference_mode()
def score_documents(
    model: LSTMLanguageModel,
    ids: np.ndarray,
    batch_size: int = 32,
    seq_len: int = 256,
    max_tokens: int | None = None,
    device: torch.device | str = "cpu",
    precision: str = "float32",
) -> tuple[float, int]:
    """Summed loss (nats) and count of the first `max_tokens` scored ids of `ids`, each document from a zero state.

    A document is `EOT text EOT`: it starts at an end-of-text id (read, not scored) and runs to the
    next one; every id after the first is scored once, with the state of its own document only.
    Documents of similar length are scored side by side, `seq_len` ids per forward pass, the
    padding masked by `lengths`; so the result does not depend on batch_size or seq_len.
    """
    total = max(0, len(ids) - 1)
    if max_tokens is not None:
        total = min(total, max(0, max_tokens))
    if total == 0:
        return 0.0, 0
    # Positions are input indices: position i feeds ids[i] and scores ids[i + 1].
    bounds = np.unique(np.concatenate([[0, total], np.flatnonzero(np.asarray(ids[:total]) == EOT_ID)]))
    documents = sorted(zip(bounds[:-1].tolist(), bounds[1:].tolist()), key=lambda doc: doc[0] - doc[1])  # longest first
    was_training = model.training
    model.eval()
    losses = torch.zeros((), dtype=torch.float64)
    try:
        with autocast(precision, device):
            for first in range(0, len(documents), batch_size):
                losses += _score_documents_side_by_side(
                    model, ids, documents[first : first + batch_size], seq_len, device
                )
    finally:
        model.train(was_training)
    return float(losses), total


def _score_documents_side_by_side(
    model: LSTMLanguageModel, ids: np.ndarray, parts: list[tuple[int, int]], seq_len: int, device
):
    """Summed loss of these parts (longest first), each from a zero state.

    Sorted longest first, the parts still running at any offset are the first rows: the state of
    those rows is carried to the next pass, the others have ended.
    """
    lengths = np.array([end - start for start, end in parts])
    state = model.initial_state(len(parts), device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for offset in range(0, int(lengths[0]), seq_len):
        rows = int((lengths > offset).sum())
        width = min(seq_len, int(lengths[0]) - offset)
        inputs, targets = _chunk(ids, parts[:rows], offset, width)
        chunk_lengths = torch.from_numpy(np.minimum(lengths[:rows] - offset, width))
        state = tuple(tensor[:, :rows] for tensor in state)
        logits, state = model(inputs.to(device), state, chunk_lengths)
        nats = F.cross_entropy(logits.transpose(1, 2).float(), targets.to(device), ignore_index=PAD_ID, reduction="sum")
        total += nats.double()
    return total.cpu()
