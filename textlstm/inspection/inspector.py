"""Looking into a trained model from Python, and what `textlstm inspect` runs.

    import textlstm
    recording = textlstm.record_states('He said "HELLO" (to [them])', checkpoint="checkpoints/run")
    recording.cell.shape            # [layers, tokens, cells]; also input_gate, forget_gate, output_gate, hidden
    for cell in textlstm.find_cells(recording, regex=[r"\\d+"]):
        print(cell.layer, cell.index, cell.feature, cell.correlation, cell.ablation_bits_on, cell.ablation_bits_off)

`inspect_text` does both and adds the memory of the model (textlstm/inspection/memory.py);
`inspect_with` does the same with a model already loaded (the server's); `write_report` writes its
HTML report and PNG pictures into a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from textlstm.errors import TextlstmError
from textlstm.inspection.cells import PER_FEATURE, FoundCell
from textlstm.inspection.cells import find_cells as _find_cells
from textlstm.inspection.features import Feature, text_features
from textlstm.inspection.heatmaps import INSTALL_HINT, matplotlib_available, write_heatmaps
from textlstm.inspection.memory import Memory, memory
from textlstm.inspection.recorder import Recording, record
from textlstm.inspection.report import write_html_report
from textlstm.runs.inference import load_for_inference


def load_model(
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    precision: str = "float32",
    quantize: str | None = None,
    threads: int | None = 1,
):
    """(model in eval mode, tokenizer, checkpoint folder) of a checkpoint folder or "hf://USER/NAME[@REVISION]"
    (default: the newest folder under ./checkpoints), held as `textlstm generate` holds it: `precision`
    the weights' dtype ("auto": what training would choose on the device), `quantize` "int8" for int8
    weights on the CPU; `threads` CPU threads for torch in this process (None: as they are), one by
    default since the text is read one token at a time."""
    model, tokenizer, _, folder = load_for_inference(checkpoint, device, precision, quantize, threads)
    return model, tokenizer, folder


def record_states(
    text: str,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    precision: str = "float32",
    quantize: str | None = None,
) -> Recording:
    """The gates and states of a checkpoint's model reading `text` (textlstm/inspection/recorder.py):
    numpy arrays [layers, tokens, cells] `input_gate`, `forget_gate`, `output_gate`, `cell`, `hidden`,
    and `nats` [tokens], the loss of each token."""
    model, tokenizer, _ = load_model(checkpoint, device, precision, quantize)
    return record(model, tokenizer, text)


def find_cells(
    recording: Recording, regex: tuple[str, ...] | list[str] = (), per_feature: int = PER_FEATURE
) -> list[FoundCell]:
    """The cells of `recording`'s model that track the built-in features of its text, and one
    feature per regular expression in `regex` (on for its matches): `per_feature` cells each, ranked
    by |R|, with their ablations (textlstm/inspection/cells.py)."""
    return _find_cells(recording, text_features(recording.text, list(regex)), per_feature)


@dataclass
class Inspection:
    checkpoint: Path | None  # the folder the model came from (None: a model made in Python)
    recording: Recording
    features: list[Feature]
    cells: list[FoundCell]
    memory: Memory

    @property
    def quiet_features(self) -> list[str]:
        """The features that found no cell: constant over the text's tokens."""
        found = {cell.feature for cell in self.cells}
        return [feature.name for feature in self.features if feature.name not in found]

    def as_dict(self) -> dict:
        """The found cells and the summaries, without the states."""
        recording = self.recording
        return {
            "cells": [cell.as_dict() for cell in self.cells],
            "memory": self.memory.as_dicts(),
            "tokens": len(recording.ends),
            "characters": int(recording.chars.sum()),
            "bits_per_char": recording.bits_per_char,
        }


def inspect_text(
    text: str,
    checkpoint: str | Path | None = None,
    device: str = "cpu",
    precision: str = "float32",
    quantize: str | None = None,
    regex: tuple[str, ...] | list[str] = (),
    per_feature: int = PER_FEATURE,
) -> Inspection:
    """Record, find cells and measure memory in one go."""
    if not text:
        raise TextlstmError("the text to inspect is empty")
    text_features(text, list(regex))  # first: a bad expression is refused before the model loads
    model, tokenizer, folder = load_model(checkpoint, device, precision, quantize)
    return inspect_with(model, tokenizer, folder, text, regex, per_feature)


def inspect_with(
    model: torch.nn.Module,
    tokenizer,
    checkpoint: Path | None,
    text: str,
    regex: tuple[str, ...] | list[str] = (),
    per_feature: int = PER_FEATURE,
) -> Inspection:
    """`inspect_text` with a model already loaded (in eval mode), as the server holds it; `checkpoint`
    is the folder it came from. The model is only read: no weight, mode or cache of it changes."""
    features = text_features(text, list(regex))
    recording = record(model, tokenizer, text)
    return Inspection(checkpoint, recording, features, _find_cells(recording, features, per_feature), memory(recording))


def write_report(inspection: Inspection, folder: str | Path) -> tuple[list[Path], str | None]:
    """Write report.html and, with matplotlib, the PNGs (textlstm/inspection/heatmaps.py) into
    `folder` (made if missing): the paths written, and a note when the PNGs were left out."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise TextlstmError(f"cannot write the report into {folder}: it is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TextlstmError(f"cannot make the folder {folder}: {error.strerror or error}") from None
    try:
        written = [write_html_report(inspection, folder / "report.html")]
        if not matplotlib_available():
            return written, f"no PNG heatmaps: {INSTALL_HINT}"
        return written + write_heatmaps(inspection, folder), None
    except OSError as error:
        raise TextlstmError(f"cannot write the report into {folder}: {error.strerror or error}") from None
