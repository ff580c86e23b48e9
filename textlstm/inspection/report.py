"""The inspection as one self-contained HTML file: the text shaded by a chosen cell's state or gate,
per layer; hovering a token shows that cell's gates and states there; the found cells with their
ablations and the memory of each layer in tables. No scripts or styles from elsewhere.

Its size is capped: the first MAX_TOKENS tokens are shown, and as many cells as MAX_BYTES allows
(5 values of one byte per cell and token): the found cells first, then the others by how much their
c varies. Each series is stored in one byte per token: gates over [0, 1], h over [-1, 1], c over its
own largest |c|, which the page shows.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from textlstm.fileio import write_text

MAX_TOKENS = 20_000
MAX_BYTES = 4_000_000
SERIES = {"cell": "c", "hidden": "h", "input": "input gate", "forget": "forget gate", "output": "output gate"}


def write_html_report(inspection, path: str | Path) -> Path:
    """Write the report of an `Inspection` (textlstm/inspection/inspector.py) to `path`."""
    path = Path(path)
    write_text(path, report_html(inspection))
    return path


def report_html(inspection) -> str:
    recording = inspection.recording
    tokens = min(len(recording.ends), MAX_TOKENS)
    cells = _cells_shown(inspection, tokens)
    data = {
        "pieces": recording.pieces[:tokens],
        "labels": {f"{layer}:{index}": label for (layer, index), label in _labels(inspection).items()},
        "cells": [[layer, index] for layer, index in cells],
        "series": {f"{layer}:{index}": _encoded_series(recording, layer, index, tokens) for layer, index in cells},
        "names": SERIES,
    }
    total = len(recording.ends)
    shown = f"the first {tokens:,} of {total:,} tokens" if tokens < total else f"{tokens:,} tokens"
    all_cells = recording.cell.shape[0] * recording.cell.shape[2]
    cells_note = f"{len(cells):,} of {all_cells:,} cells" if len(cells) < all_cells else f"all {all_cells:,} cells"
    return PAGE.format(
        title=html.escape(f"inspection of {inspection.checkpoint}"),
        summary=html.escape(
            f"{inspection.checkpoint}: {total:,} tokens, {int(recording.chars.sum()):,} characters, "
            f"{recording.bits_per_char:.3f} bits per character. Shown: {shown}, {cells_note}."
        ),
        cells_table=_cells_table(inspection),
        memory_table=_memory_table(inspection),
        data=json.dumps(data).replace("</", "<\\/"),
    )


def _cells_shown(inspection, tokens: int) -> list[tuple[int, int]]:
    found = list(dict.fromkeys((cell.layer, cell.index) for cell in inspection.cells))
    cell = inspection.recording.cell
    by_spread = np.argsort(-cell[:, :tokens].std(axis=1), axis=None)
    others = [tuple(int(i) for i in np.unravel_index(flat, (cell.shape[0], cell.shape[2]))) for flat in by_spread]
    budget = max(MAX_BYTES // (len(SERIES) * tokens), len(found))
    return list(dict.fromkeys(found + others))[:budget]


def _labels(inspection) -> dict[tuple[int, int], str]:
    labels: dict[tuple[int, int], list[str]] = {}
    for cell in inspection.cells:
        labels.setdefault((cell.layer, cell.index), []).append(f"{cell.feature} R {cell.correlation:+.2f}")
    return {key: ", ".join(names) for key, names in labels.items()}


def _encoded_series(recording, layer: int, index: int, tokens: int) -> dict:
    arrays = {name: values[layer, :tokens, index] for name, values in recording.gates().items()}
    scale = float(np.abs(arrays["cell"]).max()) or 1.0
    encoded = {}
    for name, values in arrays.items():
        if name == "cell":
            values = (values / scale + 1) / 2
        elif name == "hidden":
            values = (values + 1) / 2
        encoded[name] = base64.b64encode(np.clip(np.round(values * 255), 0, 255).astype(np.uint8).tobytes()).decode()
    return {"scale": scale, **encoded}


def _cells_table(inspection) -> str:
    if not inspection.cells:
        return "<p>No feature changes over this text, so no cell was ranked.</p>"
    rows = "".join(
        f"<tr><td>{cell.layer}</td><td>{cell.index}</td><td>{html.escape(cell.feature)}</td>"
        f"<td>{cell.correlation:+.3f}</td><td>{_number(cell.ablation_bits_on)}</td>"
        f"<td>{_number(cell.ablation_bits_off)}</td></tr>"
        for cell in inspection.cells
    )
    return (
        "<table><tr><th>layer</th><th>cell</th><th>feature</th><th>R</th><th>ablation: bits/char where on</th>"
        f"<th>where off</th></tr>{rows}</table>"
    )


def _memory_table(inspection) -> str:
    rows = "".join(
        f"<tr><td>{row['layer']}</td><td>{row['median_steps']:,.1f}</td><td>{row['share_over_10']:.0%}</td>"
        f"<td>{row['share_over_100']:.0%}</td><td>{row['share_over_1000']:.0%}</td></tr>"
        for row in inspection.memory.as_dicts()
    )
    return (
        "<table><tr><th>layer</th><th>median time constant (steps)</th><th>cells over 10 steps</th>"
        f"<th>over 100</th><th>over 1,000</th></tr>{rows}</table>"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
#text {{ font-family: monospace; white-space: pre-wrap; line-height: 1.6; border: 1px solid #ccc; padding: .8em; }}
#text span:hover {{ outline: 1px solid #000; }}
#tip {{ position: fixed; background: #fff; border: 1px solid #888; padding: .4em; font: 12px monospace;
        pointer-events: none; display: none; white-space: pre; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .2em .6em; text-align: right; }}
label {{ margin-right: 1em; }}
</style></head><body>
<h1>Inside the LSTM</h1>
<p>{summary}</p>
<p>The forget gate decides what leaves the cell state c, the input gate what enters it, the output gate
how much of it is shown as h. Pick a layer, a cell and what to shade by; hover a token for its values.</p>
<p><label>layer <select id="layer"></select></label><label>cell <select id="cell"></select></label>
<label>shade by <select id="series"></select></label><span id="scale"></span></p>
<div id="text"></div><div id="tip"></div>
<h2>Cells that track a feature</h2>
<p>R: correlation of the cell's c with the feature. Ablation: the change in bits per character when the cell's c
is held at its mean where the feature is off, for the predictions made where the feature is on and where it is off.</p>
{cells_table}
<h2>Memory</h2>
<p>Time constant of a cell: 1 / (1 - its mean forget gate), in steps.</p>
{memory_table}
<script type="application/json" id="data">{data}</script>
<script>
const data = JSON.parse(document.getElementById("data").textContent);
const decoded = {{}};
function series(key) {{
  if (!decoded[key]) {{
    const raw = data.series[key], out = {{scale: raw.scale}};
    for (const name of Object.keys(data.names)) {{
      const bytes = atob(raw[name]), values = new Float32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) {{
        const unit = bytes.charCodeAt(i) / 255;
        values[i] = name === "cell" ? (unit * 2 - 1) * raw.scale : name === "hidden" ? unit * 2 - 1 : unit;
      }}
      out[name] = values;
    }}
    decoded[key] = out;
  }}
  return decoded[key];
}}
const layerSelect = document.getElementById("layer"), cellSelect = document.getElementById("cell");
const seriesSelect = document.getElementById("series"), text = document.getElementById("text");
const tip = document.getElementById("tip"), scaleNote = document.getElementById("scale");
const layers = [...new Set(data.cells.map(c => c[0]))].sort((a, b) => a - b);
for (const layer of layers) layerSelect.add(new Option(String(layer), String(layer)));
for (const [name, label] of Object.entries(data.names)) seriesSelect.add(new Option(label, name));
function fillCells() {{
  cellSelect.innerHTML = "";
  for (const [layer, index] of data.cells) {{
    if (String(layer) !== layerSelect.value) continue;
    const label = data.labels[layer + ":" + index];
    cellSelect.add(new Option(label ? index + " (" + label + ")" : String(index), layer + ":" + index));
  }}
}}
const spans = data.pieces.map((piece, i) => {{
  const span = document.createElement("span");
  span.textContent = piece;
  span.dataset.i = i;
  text.appendChild(span);
  return span;
}});
function color(name, value, scale) {{
  if (name === "cell" || name === "hidden") {{
    const v = Math.max(-1, Math.min(1, value / (name === "cell" ? scale : 1)));
    return v >= 0 ? `rgba(220,50,32,${{v}})` : `rgba(30,90,220,${{-v}})`;
  }}
  return `rgba(30,160,60,${{value}})`;
}}
function shade() {{
  const s = series(cellSelect.value), name = seriesSelect.value;
  const scale = s.scale.toFixed(2);
  scaleNote.textContent = name === "cell" ? "c from -" + scale + " (blue) to +" + scale + " (red)" :
    name === "hidden" ? "h from -1 (blue) to +1 (red)" : "0 (white) to 1 (green)";
  spans.forEach((span, i) => {{ span.style.background = color(name, s[name][i], s.scale); }});
}}
text.addEventListener("mousemove", event => {{
  const i = event.target.dataset ? event.target.dataset.i : undefined;
  if (i === undefined) {{ tip.style.display = "none"; return; }}
  const s = series(cellSelect.value), f = v => v.toFixed(2);
  const [layer, cell] = cellSelect.value.split(":");
  tip.textContent = `token ${{i}} ${{JSON.stringify(data.pieces[i])}}\\nlayer ${{layer}}, cell ${{cell}}\\n` +
    `input ${{f(s.input[i])}}  forget ${{f(s.forget[i])}}  output ${{f(s.output[i])}}\\n` +
    `c ${{f(s.cell[i])}}  h ${{f(s.hidden[i])}}`;
  tip.style.left = (event.clientX + 12) + "px";
  tip.style.top = (event.clientY + 12) + "px";
  tip.style.display = "block";
}});
text.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
layerSelect.addEventListener("change", () => {{ fillCells(); shade(); }});
cellSelect.addEventListener("change", shade);
seriesSelect.addEventListener("change", shade);
fillCells();
shade();
</script></body></html>
"""
