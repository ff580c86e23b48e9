"""The model summary Keras's `model.summary()` prints: each layer, its output shape and its parameters.

Shapes are (batch, time, features) with None for the sizes that vary from batch to batch. A
parameter shared by two layers (the embedding tied to the output layer) is counted once, at the
first layer that holds it, so the total is the number of values in the weights file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.table import Table

from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel

Shape = tuple[int | None, ...]


@dataclass
class LayerRow:
    name: str
    kind: str  # what the layer is, with the settings that matter ("LSTM, recurrent dropout 0.1")
    output_shape: Shape
    parameters: int

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "type": self.kind,
            "output_shape": list(self.output_shape),
            "parameters": self.parameters,
        }


def skeleton(config: ModelConfig) -> LSTMLanguageModel:
    """The model of `config` on the meta device: its layers and shapes without memory or weights."""
    with torch.device("meta"):
        return LSTMLanguageModel(config)


def layer_rows(model: LSTMLanguageModel, masked: bool = False) -> list[LayerRow]:
    """One row per layer in the order data flows through them.

    masked: the run trains on padded documents, so a masking step (packed sequences) follows the embedding.
    """
    config = model.config
    seen: set[int] = set()

    def count(*modules_or_params) -> int:
        total = 0
        for item in modules_or_params:
            params = item.parameters() if isinstance(item, torch.nn.Module) else [item]
            for param in params:
                if id(param) not in seen:
                    seen.add(id(param))
                    total += param.numel()
        return total

    def sequence(features: int) -> Shape:
        return (None, None, features)

    dropout = f"Dropout {config.dropout or 0:g}"
    rows = [LayerRow("embedding", "Embedding", sequence(config.embedding_size), count(model.embedding))]
    if masked:
        rows.append(LayerRow("masking", "Masking, packed sequences", sequence(config.embedding_size), 0))
    rows.append(LayerRow("dropout", dropout, sequence(config.embedding_size), 0))
    for layer in range(config.layers):
        weights = [getattr(model.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        kind, parameters = "LSTM", count(*weights)
        if model.mogrifiers is not None:  # its gating matrices counted in the layer's row, and named there
            mogrifier = count(model.mogrifiers[layer])
            kind, parameters = (
                f"Mogrifier LSTM ({config.mogrifier_rounds} rounds: {mogrifier:,} parameters)",
                parameters + mogrifier,
            )
        kind += f", recurrent dropout {config.recurrent_dropout or 0:g}"
        rows.append(LayerRow(f"lstm_{layer + 1}", kind, sequence(config.hidden_size), parameters))
        rows.append(LayerRow(f"dropout_{layer + 1}", dropout, sequence(config.hidden_size), 0))
    if model.projection is not None:
        rows.append(LayerRow("projection", "Linear, no bias", sequence(config.embedding_size), count(model.projection)))
    if model.adaptive is not None:
        cutoffs = ", ".join(str(c) for c in model.adaptive.cutoffs[:-1])
        rows.append(
            LayerRow(
                "output", f"Adaptive softmax, clusters at {cutoffs}", sequence(config.vocab_size), count(model.adaptive)
            )
        )
    elif model.byte_softmax is not None:
        kind = "Linear + byte softmax"
        rows.append(LayerRow("output", kind, sequence(config.vocab_size), count(model.byte_softmax)))
    else:
        kind = "Linear, weight tied to the embedding" if config.tie_weights else "Linear"
        rows.append(LayerRow("output", kind, sequence(config.vocab_size), count(model.decoder)))
    return rows


def shape_text(shape: Shape) -> str:
    return "(" + ", ".join("None" if size is None else str(size) for size in shape) + ")"


def summary_table(rows: list[LayerRow], title: str | None = None) -> Table:
    total = sum(row.parameters for row in rows)
    table = Table(title=title, title_justify="left", show_footer=True, footer_style="bold")
    table.add_column("Layer (type)", footer="Total")
    table.add_column("Output shape", footer="")
    table.add_column("Param #", justify="right", footer=f"{total:,}")
    for row in rows:
        table.add_row(f"{row.name} ({row.kind})", shape_text(row.output_shape), f"{row.parameters:,}")
    table.caption = f"{total:,} parameters, all trainable ({_megabytes(total * 4)} in float32)"
    table.caption_justify = "left"
    return table


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} KB"
