"""Cells that track a feature of the text: each cell's correlation with each feature, the best
cells ranked, and the evidence of an ablation.

Correlation: Pearson's R between a cell's state c after each token and the feature's value at that
token (textlstm/inspection/features.py), over the recorded text; signed, cells ranked by |R|.

Ablation: the text read again with that one cell of c held, at every step, at its mean over the
tokens where the feature is off, so the cell no longer says anything about the feature whatever its
sign. Reported as the change in bits per character (held minus as recorded) of the predictions made
from the states of tokens where the feature is on (`ablation_bits_on`) and where it is off
(`ablation_bits_off`): the prediction of token k+1 is grouped with token k, whose state makes it.
A cell the model uses for the feature costs bits where the feature is on and little elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from textlstm.inspection.features import Feature
from textlstm.inspection.recorder import LN2, Recording, nats_change_with_cells_held

PER_FEATURE = 3  # cells reported per feature


@dataclass
class FoundCell:
    layer: int
    index: int
    feature: str
    correlation: float  # R of c with the feature
    ablation_bits_on: float | None  # None when no prediction falls on that side
    ablation_bits_off: float | None
    held_at: float | None  # the value c was held at: its mean where the feature is off

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "index": self.index,
            "feature": self.feature,
            "correlation": self.correlation,
            "ablation_bits_on": self.ablation_bits_on,
            "ablation_bits_off": self.ablation_bits_off,
        }


def correlations(cell: np.ndarray, values: np.ndarray) -> np.ndarray:
    """R [layers, cells] of each cell's c (cell: [layers, tokens, cells]) with values [tokens]; 0 for
    a cell that does not change."""
    values = values.astype(np.float64)
    values = (values - values.mean()) / values.std()
    cell = cell.astype(np.float64)
    spread = cell.std(axis=1)
    centered = (cell - cell.mean(axis=1, keepdims=True)) * values[None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = centered.mean(axis=1) / spread
    return np.nan_to_num(np.clip(r, -1.0, 1.0), nan=0.0)


def find_cells(recording: Recording, features: list[Feature], per_feature: int = PER_FEATURE) -> list[FoundCell]:
    """The `per_feature` cells of highest |R| for each feature that changes over the recorded tokens,
    each with its ablation; all ranked by |R|. A feature constant over the tokens finds none; one
    that is on at every token gives no ablation (None), having no mean where it is off."""
    candidates = []
    for feature in features:
        values = feature.per_token(recording.ends)
        if values.min() == values.max():
            continue
        r = correlations(recording.cell, values)
        off = values <= 0
        for flat in np.argsort(-np.abs(r), axis=None)[:per_feature]:
            layer, index = (int(i) for i in np.unravel_index(flat, r.shape))
            held_at = float(recording.cell[layer, off, index].mean()) if off.any() else None
            candidates.append((feature.name, ~off, layer, index, float(r[layer, index]), held_at))
    ablated = [candidate for candidate in candidates if candidate[5] is not None]
    changes = nats_change_with_cells_held(recording, [(layer, index, held) for _, _, layer, index, _, held in ablated])
    change_of = {id(candidate): change for candidate, change in zip(ablated, changes)}
    found = []
    for candidate in candidates:
        name, on, layer, index, r, held = candidate
        change = change_of.get(id(candidate))
        bits_on, bits_off = (
            (None, None)
            if change is None
            else (_bits(change, recording.chars, on), _bits(change, recording.chars, ~on))
        )
        found.append(FoundCell(layer, index, name, r, bits_on, bits_off, held))
    return sorted(found, key=lambda cell: -abs(cell.correlation))


def _bits(nats: np.ndarray, chars: np.ndarray, state_on: np.ndarray) -> float | None:
    """Bits per character of the predictions made from the states where `state_on` (token k's state
    predicts token k+1)."""
    chosen = state_on[:-1]
    characters = int(chars[1:][chosen].sum())
    if not characters:
        return None
    value = float(nats[1:][chosen].sum()) / characters / LN2
    return value if math.isfinite(value) else None
