"""The LSTM cell with its gates in the open, for looking into a model (`textlstm inspect`).

One time step of a layer, from the pre-activations W_ih x + b_ih + W_hh h + b_hh (torch.lstm_cell's
gate order: input, forget, candidate, output):

    i = sigmoid(pre_i)   f = sigmoid(pre_f)   g = tanh(pre_g)   o = sigmoid(pre_o)
    c = f * c_prev + i * g
    h = o * tanh(c)

`cell_update` is that arithmetic; the models compute the pre-activations from their own weights
(`layer_gates` of textlstm/model/network.py and textlstm/model/quantized.py), so what `trace_gates`
records is what the model runs. The int8 model's step is `cell_update` itself; the float model's
`step` and `forward` run torch.lstm_cell and the fused kernel, the same arithmetic in one call
(tests/test_inspection.py checks that the recorded h gives forward's logits). The gates and the new
state are computed in float32 whatever the weights' dtype, as the bfloat16 step does
(textlstm/model/packed_gates.py).

`HeldCells` pins chosen cells of c to given values at every step (h then follows from the pinned c):
an ablation, to see what a cell's state is for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GATE_NAMES = ("input", "forget", "output", "cell", "hidden")  # what a trace records per layer and token


@dataclass
class CellStep:
    """One layer's gates and new state for one time step, each [batch, hidden]."""

    input: torch.Tensor
    forget: torch.Tensor
    output: torch.Tensor
    cell: torch.Tensor  # c
    hidden: torch.Tensor  # h


@dataclass
class HeldCells:
    """Cells whose state c is held at a value: `mask` (bool) and `values` (float32), [layers, batch, hidden] each."""

    mask: torch.Tensor
    values: torch.Tensor

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mask[layer], self.values[layer]


@dataclass
class GateTrace:
    """What a model did over a sequence.

    outputs: the last layer's h [batch, time, hidden], what the output layer reads.
    state: (h, c) after the last step, each [layers, batch, hidden].
    gates: GATE_NAMES -> [layers, batch, time, hidden] (float32), or None when not recorded.
    """

    outputs: torch.Tensor
    state: tuple[torch.Tensor, torch.Tensor]
    gates: dict[str, torch.Tensor] | None


def cell_update(pre: torch.Tensor, c: torch.Tensor, held: tuple[torch.Tensor, torch.Tensor] | None = None) -> CellStep:
    """The gates and new state from the pre-activations [batch, 4 * hidden] and the previous c
    [batch, hidden]; `held` = (mask, values) [batch, hidden] pins those cells of the new c."""
    if pre.dtype != torch.float32:
        pre, c = pre.float(), c.float()
    # One sigmoid for the three gates (the candidate's quarter of it is not used): each call costs more than its work.
    input_gate, forget_gate, _, output_gate = torch.sigmoid(pre).chunk(4, dim=-1)
    cell = torch.addcmul(forget_gate * c, input_gate, torch.tanh(pre.chunk(4, dim=-1)[2]))
    if held is not None:
        cell = torch.where(held[0], held[1], cell)
    return CellStep(input_gate, forget_gate, output_gate, cell, output_gate * torch.tanh(cell))


@torch.no_grad()
def trace_gates(
    model,
    ids: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
    held: HeldCells | None = None,
    record: bool = True,
) -> GateTrace:
    """Run `model` (an LSTMLanguageModel or QuantizedLanguageModel, in eval mode) over ids [batch,
    time] from `state`, one layer at a time through its `layer_gates`; with `record`, keep every
    layer's gates and states (float32: layers x batch x time x hidden x 5 values, 20 bytes each).
    Each layer holds all its steps at once: read a long text in pieces, carrying the state."""
    if model.training:
        raise ValueError("trace_gates runs a model in eval mode: training's dropouts would change every step")
    if state is None:
        state = model.initial_state(ids.shape[0], ids.device)
    dtype = state[0].dtype
    x = model.embedding(ids)
    gates = {name: [] for name in GATE_NAMES} if record else None
    hs, cs = [], []
    for layer in range(model.config.layers):
        held_here = None if held is None else held.layer(layer)
        steps = model.layer_gates(layer, x, (state[0][layer], state[1][layer]), held_here)
        x = torch.stack([step.hidden for step in steps], dim=1).to(dtype)
        hs.append(steps[-1].hidden.to(dtype))
        cs.append(steps[-1].cell.to(dtype))
        if gates is not None:
            for name in GATE_NAMES:
                gates[name].append(torch.stack([getattr(step, name) for step in steps], dim=1))
    if gates is not None:
        gates = {name: torch.stack(layers) for name, layers in gates.items()}
    return GateTrace(x, (torch.stack(hs), torch.stack(cs)), gates)
