"""Run a model over a text and keep, for each layer and token, its input, forget and output gates,
its cell state c and its hidden state h, and the loss of each token.

The text is read as a new document, after the end-of-text token, as `generate` reads a prompt. The
states of token k are those after reading it; the loss of token k is that of predicting it from the
state before it (the first token's from the state after end of text). The gates come from the
model's own step written out (`layers_gates`, textlstm/model/gates.py): the same weights and cell.

Tokens and characters: each token stands for the characters from the end of the token before it to
its own end (its offsets in the text); for a char model that is its character, for a BPE or word
model the characters it covers. A character spelled by several byte tokens belongs to the first of
them, so the characters of all tokens add up to the text. Bits per character = summed loss (nats) /
characters / ln 2, the same for every tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from textlstm.errors import TextlstmError
from textlstm.model.gates import GATE_NAMES, GateTrace, HeldCells, trace_gates
from textlstm.tokens import EOT_ID

LN2 = math.log(2)
MAX_RECORDING_BYTES = 2 << 30  # 5 float32 values per layer, token and cell: 2 GiB holds 100,000 tokens of 2 x 512
# Tokens read at once: each layer holds the gates of all of them (and the logits over the vocabulary)
PIECE = 512


@dataclass
class Recording:
    """What a model did over `text`. Arrays of states and gates are [layers, tokens, cells], float32."""

    text: str
    ends: np.ndarray  # [tokens]: where each token's characters end in `text`
    input_gate: np.ndarray
    forget_gate: np.ndarray
    output_gate: np.ndarray
    cell: np.ndarray  # c
    hidden: np.ndarray  # h
    nats: np.ndarray  # [tokens]: -ln p(token | the text before it)
    model: torch.nn.Module = field(repr=False)  # what made it, for runs with cells held (ablation)
    ids: torch.Tensor = field(repr=False)  # [1, 1 + tokens]: end of text, then the text's tokens

    @property
    def starts(self) -> np.ndarray:
        """Where each token's characters start: the end of the token before it."""
        return np.concatenate([[0], self.ends[:-1]]).astype(self.ends.dtype)

    @property
    def chars(self) -> np.ndarray:
        """How many characters each token stands for (0 for the second byte token of a character)."""
        return self.ends - self.starts

    @property
    def pieces(self) -> list[str]:
        """Each token's characters; joined, they are the text."""
        return [self.text[start:end] for start, end in zip(self.starts, self.ends)]

    @property
    def bits_per_char(self) -> float:
        return float(self.nats.sum() / max(int(self.chars.sum()), 1) / LN2)

    def gates(self) -> dict[str, np.ndarray]:
        """The recorded arrays by name: input, forget, output, cell, hidden."""
        return {
            "input": self.input_gate,
            "forget": self.forget_gate,
            "output": self.output_gate,
            "cell": self.cell,
            "hidden": self.hidden,
        }


def record(model: torch.nn.Module, tokenizer, text: str) -> Recording:
    """Run `model` (eval mode) over `text` read as a new document; see the module's docstring."""
    if not text:
        raise TextlstmError("the text to inspect is empty")
    encoding = tokenizer.hf.encode(text, add_special_tokens=False)
    tokens = len(encoding.ids)
    config = model.config
    size = 20 * config.layers * config.hidden_size * tokens
    if size > MAX_RECORDING_BYTES:
        fits = MAX_RECORDING_BYTES // (20 * config.layers * config.hidden_size)
        raise TextlstmError(
            f"the text is {tokens:,} tokens; the states of {fits:,} tokens fit in "
            f"{MAX_RECORDING_BYTES >> 30} GiB for this model: inspect a shorter text"
        )
    ids = torch.tensor([[EOT_ID, *encoding.ids]], device=model.embedding.weight.device)
    gates = {name: np.zeros((config.layers, tokens + 1, config.hidden_size), dtype=np.float32) for name in GATE_NAMES}
    nats = []
    for start, trace in _read_in_pieces(model, ids):
        end = start + trace.outputs.shape[1]
        for name, values in trace.gates.items():
            gates[name][:, start:end] = values[:, 0].cpu().numpy()
        nats.append(_token_nats(model, trace, ids[:, start : end + 1]))
    gates = {name: values[:, 1:] for name, values in gates.items()}  # the states after the text's tokens
    ends = np.maximum.accumulate(np.array([end for _, end in encoding.offsets], dtype=np.int64))
    return Recording(
        text,
        ends,
        gates["input"],
        gates["forget"],
        gates["output"],
        gates["cell"],
        gates["hidden"],
        np.concatenate(nats, axis=1)[0],
        model,
        ids,
    )


def nats_change_with_cells_held(
    recording: Recording, holds: list[tuple[int, int, float]], rows: int = 32
) -> np.ndarray:
    """How much the loss of each token changes [len(holds), tokens] when the model reads the text
    again with one cell of c held at a value throughout: holds[r] = (layer, cell, value) for row r.
    `rows` at a time, each batch with a row that holds nothing to compare with: a row's result can
    change in the last digits with the batch's shape, and these changes are small."""
    model, ids = recording.model, recording.ids
    config = model.config
    changes = []
    for first in range(0, len(holds), rows):
        chunk = holds[first : first + rows]
        mask = torch.zeros(config.layers, 1 + len(chunk), config.hidden_size, dtype=torch.bool, device=ids.device)
        values = torch.zeros(mask.shape, device=ids.device)
        for row, (layer, cell, value) in enumerate(chunk, start=1):
            mask[layer, row, cell] = True
            values[layer, row, cell] = value
        batch = ids.expand(1 + len(chunk), -1)
        pieces = _read_in_pieces(model, batch, HeldCells(mask, values), record=False)
        nats = np.concatenate(
            [
                _token_nats(model, trace, batch[:, start : start + trace.outputs.shape[1] + 1])
                for start, trace in pieces
            ],
            axis=1,
        )
        changes.append(nats[1:] - nats[:1])
    return np.concatenate(changes) if changes else np.zeros((0, ids.shape[1] - 1), dtype=np.float32)


def _read_in_pieces(model, ids: torch.Tensor, held: HeldCells | None = None, record: bool = True):
    """(start, GateTrace) for each piece of PIECE ids, the state carried from one to the next."""
    state = None
    for start in range(0, ids.shape[1], PIECE):
        trace = trace_gates(model, ids[:, start : start + PIECE], state, held, record)
        state = trace.state
        yield start, trace


@torch.no_grad()
def _token_nats(model, trace: GateTrace, ids: torch.Tensor) -> np.ndarray:
    """-ln p of ids[:, 1:] [batch, tokens], each from the outputs after the id before it; `trace` read
    ids (but for the last, which it may not have read)."""
    targets = ids[:, 1:]
    logits = model.logits(trace.outputs[:, : targets.shape[1]]).float()
    return (-F.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]).cpu().numpy()
