"""One LSTM time step in bfloat16 on the CPU with the gate weights laid out once, for `step`.

`torch.lstm_cell` takes x @ W_ih and h @ W_hh as two matrix products, and for bfloat16 weights
oneDNN lays each weight out anew for every product. Here [x, h] is multiplied by [W_ih, W_hh],
laid out once in oneDNN's own format (`torch.ops.mkldnn._reorder_linear_weight`, what
torch.compile's CPU weight freezing uses); the cell's arithmetic then runs in float32 and the new
state is rounded to bfloat16. Measured on a 2 x 512 char model (one thread, AVX-512 BF16 / AMX),
`step` at batch 1 / 64 / 256: 0.92 / 1.92 / 4.84 ms through lstm_cell, 0.59 / 1.33 / 3.62 ms so.
A row's result does not depend on the other rows of its batch. The layout is a second copy of
the LSTM's weights (6.5 MB for 2 x 512 in bfloat16), kept while the model lives.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn as nn

_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (weights' identity, PackedGates)


class PackedGates:
    def __init__(self, layer_weights: list[list[torch.Tensor]]):
        self.layers = []
        for w_ih, w_hh, b_ih, b_hh in layer_weights:
            weight = torch.ops.mkldnn._reorder_linear_weight(torch.cat([w_ih, w_hh], dim=1).contiguous())
            self.layers.append((weight, (b_ih.float() + b_hh.float()).to(w_ih.dtype)))

    def cell_step(
        self, layer: int, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, c) after reading x [batch, input] from `state` ([batch, hidden] each), as torch.lstm_cell gives them."""
        h, c = state
        weight, bias = self.layers[layer]
        gates = torch.ops.mkldnn._linear_pointwise(torch.cat([x, h], dim=1), weight, bias, "none", [], "").float()
        in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
        c_new = torch.sigmoid(forget_gate) * c.float() + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
        h_new = torch.sigmoid(out_gate) * torch.tanh(c_new)
        return h_new.to(h.dtype), c_new.to(c.dtype)


def packed_gates(model: nn.Module, layer_weights) -> PackedGates | None:
    """The packed weights of `model`'s LSTM for `step` (built on the first call, again when a weight
    changes), or None where they do not apply: float32, training, the mogrifier cell, another
    device, a torch without oneDNN's bfloat16 kernels."""
    weights = list(model.lstm.parameters())
    if (
        model.training
        or model.mogrifiers is not None
        or weights[0].dtype != torch.bfloat16
        or weights[0].device.type != "cpu"
    ):
        return None
    identity = tuple((w.data_ptr(), w._version) for w in weights)
    cached = _cache.get(model)
    if cached is not None and cached[0] == identity:
        return cached[1]
    packed = None
    if _available():
        packed = PackedGates([layer_weights(layer) for layer in range(model.config.layers)])
    _cache[model] = (identity, packed)
    return packed


def _available() -> bool:
    mkldnn = torch.ops.mkldnn
    try:
        return (
            torch.backends.mkldnn.is_available()
            and hasattr(mkldnn, "_reorder_linear_weight")
            and mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False
