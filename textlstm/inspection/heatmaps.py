"""PNG pictures of an inspection (matplotlib, the `plot` extra: `pip install "textlstm[plot]"`):

cells.png            the found cells' c over the first tokens of the text, one row per cell
gate_saturation.png  per layer and gate, each cell's share of tokens where the gate is nearly
                     shut (< 0.1) against nearly open (> 0.9), as Karpathy et al. 2015 plot them
memory.png           each layer's cells by time constant 1 / (1 - mean forget gate), log scale
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textlstm.fileio import atomic_write
from textlstm.inspection.memory import SPANS

INSTALL_HINT = 'PNG heatmaps need matplotlib: pip install "textlstm[plot]" (or pip install matplotlib)'
HEATMAP_TOKENS = 160  # tokens across cells.png: enough to read the characters under the columns
GATES = (("input", "input_gate"), ("forget", "forget_gate"), ("output", "output_gate"))


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_heatmaps(inspection, folder: str | Path) -> list[Path]:
    """Write the PNGs of an `Inspection` (textlstm/inspection/inspector.py) into `folder`; the paths written."""
    from matplotlib.figure import Figure

    folder = Path(folder)
    written = []
    for name, draw in (("cells.png", _cells), ("gate_saturation.png", _gate_saturation), ("memory.png", _memory)):
        figure = draw(Figure, inspection)
        if figure is not None:
            atomic_write(folder / name, _figure_writer(figure))
            written.append(folder / name)
    return written


def _figure_writer(figure):
    return lambda path: figure.savefig(path, format="png", dpi=110)


def _cells(Figure, inspection):
    rows = list(dict.fromkeys((cell.layer, cell.index) for cell in inspection.cells))
    if not rows:
        return None
    recording = inspection.recording
    tokens = min(HEATMAP_TOKENS, len(recording.ends))
    values = np.stack([recording.cell[layer, :tokens, index] for layer, index in rows])
    scale = np.abs(values).max(axis=1, keepdims=True)
    labels = {}
    for cell in inspection.cells:
        labels.setdefault(
            (cell.layer, cell.index), f"layer {cell.layer} cell {cell.index}: {cell.feature} R {cell.correlation:+.2f}"
        )
    figure = Figure(figsize=(max(8, tokens * 0.09), 1.2 + 0.32 * len(rows)), layout="constrained")
    axes = figure.subplots()
    axes.imshow(
        values / np.where(scale > 0, scale, 1), aspect="auto", cmap="coolwarm", vmin=-1, vmax=1, interpolation="nearest"
    )
    axes.set_yticks(range(len(rows)), [labels[row] for row in rows], fontsize=8)
    pieces = [piece.replace("\n", "↵") or "·" for piece in recording.pieces[:tokens]]
    axes.set_xticks(range(tokens), pieces, fontsize=7, family="monospace")
    axes.tick_params(axis="x", length=0)
    axes.set_title("c of the found cells, each scaled by its largest |c| (blue negative, red positive)", fontsize=10)
    return figure


def _gate_saturation(Figure, inspection):
    recording = inspection.recording
    layers = recording.cell.shape[0]
    figure = Figure(figsize=(4 * len(GATES), 3.6 * layers), layout="constrained")
    axes = figure.subplots(layers, len(GATES), squeeze=False)
    for layer in range(layers):
        for column, (name, attribute) in enumerate(GATES):
            gate = getattr(recording, attribute)[layer]
            axis = axes[layer][column]
            axis.scatter((gate < 0.1).mean(axis=0), (gate > 0.9).mean(axis=0), s=8, alpha=0.6)
            axis.plot([0, 1], [1, 0], color="grey", linewidth=0.8)
            axis.set(
                xlim=(0, 1),
                ylim=(0, 1),
                title=f"layer {layer}: {name} gate",
                xlabel="share of tokens shut (< 0.1)",
                ylabel="share of tokens open (> 0.9)",
            )
    return figure


def _memory(Figure, inspection):
    constants = inspection.memory.time_constants
    figure = Figure(figsize=(7, 4), layout="constrained")
    axis = figure.subplots()
    bins = np.logspace(0, max(4, np.log10(constants.max()) + 0.1), 40)
    for layer, row in enumerate(constants):
        axis.hist(row, bins=bins, alpha=0.6, label=f"layer {layer}")
    for steps in SPANS:
        axis.axvline(steps, color="grey", linestyle="--", linewidth=0.8)
    axis.set(
        xscale="log",
        xlabel="time constant 1 / (1 - mean forget gate), steps",
        ylabel="cells",
        title="How long the cells remember",
    )
    axis.legend()
    return figure
