"""int8 weights for sampling on a CPU: `quantize_int8(model)` turns a loaded float32 model into a
`QuantizedLanguageModel` with the same `step`, `hidden_states`, `logits`, `forward` and
`initial_state`, so the samplers, the server and the scoring code run it unchanged.

The matrix products run as fbgemm's dynamic-quantized linear (`torch.ops.quantized.linear_dynamic`):
the weights are int8 with one scale per output row, each call quantizes its input to 7 bits, and
the product accumulates in int32. The four gates of a layer are one such product, for the layers
after the first [x, h] @ [W_ih W_hh]^T + (b_ih + b_hh); the cell update (sigmoids, tanh, c and h)
runs in float32. The output layer's matrices are int8 too: the full softmax's decoder, the
byte-fallback softmax's head and byte outputs (in one product), the adaptive softmax's head and
clusters (a projection, when the output is tied to a smaller embedding, is multiplied into them
first); so are the Mogrifier's matrices.

The embedding stays float32 (a lookup reads one row), and so does the first layer's input matrix,
applied to it in float32 beside the int8 product for h: embeddings (N(0, 1) to start with) reach
|x| = 4 and more where h stays within 1, so in one product with h they would quantize h four
times as coarsely (on a char model trained briefly, the mean KL divergence per token from
float32 was 1.0e-3 that way and 2.9e-4 this way). It is the smallest LSTM matrix (embedding x 4 hidden).

Each product's input is quantized over a range that does not depend on the other rows of the
batch (`Int8Linear`), so a sequence in the server's batch gets the probabilities it gets alone (but
for float rounding, as in float32: the first layer's float32 product rounds by batch shape).
`hidden_states` runs the same step once per time step, so reading a prompt in one call gives the
state of stepping it token by token. That reads a long prompt at batch 1
about four times slower than float32's fused kernel (measured on a 2 x 256 char model), but a
prompt is read once, and then every token is a step.

Eval only: the model keeps no float weights to train.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn as nn

from textlstm.errors import TextlstmError
from textlstm.model.byte_softmax import log_prob_from_scores
from textlstm.model.gates import CellStep, cell_update
from textlstm.model.network import LSTMLanguageModel, State
from textlstm.tokens import BYTE_TOKENS

QUANTIZATIONS = ("int8",)


class Int8Linear(nn.Module):
    """y = x W^T + b with W in int8 (symmetric, one scale per output row), through fbgemm.

    fbgemm quantizes an input over the minimum and maximum of the whole tensor, so one row's
    rounding would depend on the other rows. Two more input columns (with zero weights) hold -1
    and +1, which fixes that range at [-1, 1]: inputs known to lie in it (h = o * tanh(c)) go in
    as they are; with `scale_rows`, each row is divided by its own largest |x| first and the
    output multiplied back.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale_rows: bool = False):
        super().__init__()
        weight = weight.detach().float()
        self.out_features, self.in_features = weight.shape
        self.scale_rows = scale_rows and self.in_features > 0  # an adaptive cluster can be 0 wide
        weight = torch.cat([weight, weight.new_zeros(self.out_features, 2)], dim=1)
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        bias = None if bias is None else bias.detach().float()
        self.bias = bias if self.scale_rows else None  # added once the rows are scaled back
        with warnings.catch_warnings():  # torch warns that quantized tensors are deprecated
            warnings.simplefilter("ignore")
            zero_points = torch.zeros(self.out_features, dtype=torch.long)
            int8 = torch.quantize_per_channel(weight, scales.double(), zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(int8, None if self.scale_rows else bias)
        self._range = torch.tensor([-1.0, 1.0])
        self.weight_bytes = self.out_features * (self.in_features + 4 + (0 if bias is None else 4))

    def forward(self, *pieces: torch.Tensor) -> torch.Tensor:
        """The product for x [..., in_features], or for its pieces [..., n_i] (concatenated here, in the one copy
        that adds the range columns)."""
        leading = pieces[0].shape[:-1]
        flat = [piece.reshape(math.prod(leading), piece.shape[-1]) for piece in pieces]
        if self.scale_rows:
            x = torch.cat(flat, dim=1) if len(flat) > 1 else flat[0]
            scale = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
            flat = [x / scale]
        x = torch.cat([*flat, self._range.expand(flat[0].shape[0], 2)], dim=1)
        # reduce_range: 7-bit inputs, as torch quantizes for fbgemm: without VNNI its int16 pair sums could overflow
        y = torch.ops.quantized.linear_dynamic(x, self._packed, True)
        if self.scale_rows:
            y = y * scale if self.bias is None else torch.addcmul(self.bias, y, scale)
        return y.reshape(*leading, self.out_features)


class QuantizedMogrifier(nn.Module):
    """textlstm.model.mogrifier.Mogrifier with int8 matrices. Each round can double x or h, so
    every product scales its rows by their own range."""

    def __init__(self, rounds: list[torch.Tensor]):
        super().__init__()
        self.rounds = nn.ModuleList(Int8Linear(matrix, None, scale_rows=True) for matrix in rounds)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for i, linear in enumerate(self.rounds, start=1):
            if i % 2 == 1:
                x = 2 * torch.sigmoid(linear(h)) * x
            else:
                h = 2 * torch.sigmoid(linear(x)) * h
        return x, h


class QuantizedLanguageModel(nn.Module):
    """The LSTM language model with int8 matrices, for sampling and scoring on a CPU."""

    def __init__(self, model: LSTMLanguageModel):
        super().__init__()
        config = self.config = model.config
        self.embedding = copy.deepcopy(model.embedding)
        self.mogrifiers = None
        if model.mogrifiers is not None:
            self.mogrifiers = nn.ModuleList(
                QuantizedMogrifier(list(mogrifier.rounds)) for mogrifier in model.mogrifiers
            )
        scale_rows = self.mogrifiers is not None  # h = o * tanh(c) is within [-1, 1], until a Mogrifier scales it
        w_ih, w_hh, b_ih, b_hh = model._layer_weights(0)
        self.input_weight, self.input_bias = w_ih.detach().clone(), (b_ih + b_hh).detach().clone()
        self.gates = nn.ModuleList([Int8Linear(w_hh, None, scale_rows)])
        for layer in range(1, config.layers):
            w_ih, w_hh, b_ih, b_hh = model._layer_weights(layer)
            self.gates.append(Int8Linear(torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh, scale_rows))
        self.output, self.adaptive = None, None
        if model.adaptive is not None:  # never tied, so never with a projection
            self.adaptive = _quantized_adaptive(model.adaptive)
        elif model.byte_softmax is not None:  # head and bytes in one product
            head, byte = model.byte_softmax.head, model.byte_softmax.bytes
            weight, bias = torch.cat([head.weight, byte.weight]), torch.cat([head.bias, byte.bias])
            self.output = Int8Linear(_through_projection(model, weight), bias)
        else:
            self.output = Int8Linear(_through_projection(model, model.decoder.weight), model.decoder.bias)

    def train(self, mode: bool = True) -> QuantizedLanguageModel:
        if mode:
            raise TextlstmError("an int8 model is for sampling and scoring only: train the float32 model")
        return super().train(False)

    def weight_bytes(self) -> int:
        """Bytes of the weights held: the int8 matrices with their float32 scales and biases, and the
        float32 embedding and first-layer input matrix."""
        int8 = sum(module.weight_bytes for module in self.modules() if isinstance(module, Int8Linear))
        float32 = (self.embedding.weight, self.input_weight, self.input_bias)
        return int8 + sum(tensor.numel() * tensor.element_size() for tensor in float32)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None):
        """Logits [batch, time, vocab] for ids [batch, time], and the state after each row's last real step."""
        hidden, state = self.hidden_states(ids, state, lengths)
        return self.logits(hidden), state

    def hidden_states(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """The last layer's outputs [batch, time, hidden] (zero past each row's length) and the state.

        One `_layers_step` per time step, the step that sampling takes: the state after a prompt is
        the state of stepping through it token by token. With `lengths`, a row's state stays as it
        was past its length.
        """
        h, c = state if state is not None else self.initial_state(ids.shape[0], ids.device)
        running = None
        if lengths is not None:  # [time, batch, 1]: before the row's end
            running = (torch.arange(ids.shape[1])[:, None] < lengths.cpu()[None, :]).to(ids.device)[..., None]
        outputs = []
        for t, x in enumerate(self.embedding(ids).unbind(1)):
            h_new, c_new = self._layers_step(x, (h, c))
            if running is not None:
                h_new, c_new = torch.where(running[t], h_new, h), torch.where(running[t], c_new, c)
                outputs.append(torch.where(running[t], h_new[-1], 0.0))
            else:
                outputs.append(h_new[-1])
            h, c = h_new, c_new
        hidden = torch.stack(outputs, dim=1) if outputs else h.new_zeros(ids.shape[0], 0, self.config.hidden_size)
        return hidden, (h, c)

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Read one token per row (ids [batch]): logits [batch, vocab] for the next token, and the new state."""
        if state is None:
            state = self.initial_state(ids.shape[0], ids.device)
        h, c = self._layers_step(self.embedding(ids), state)
        return self.logits(h[-1]), (h, c)

    def _layers_step(self, x: torch.Tensor, state: State) -> State:
        """(h, c) [layers, batch, hidden] after every layer reads one time step; x: [batch, embedding]."""
        h, c = state
        hs, cs = [], []
        for layer in range(len(self.gates)):
            step = cell_update(self._pre_activations(layer, x, h[layer]), c[layer])
            x = step.hidden
            hs.append(x)
            cs.append(step.cell)
        return torch.stack(hs), torch.stack(cs)

    def layer_gates(
        self, layer: int, inputs: torch.Tensor, state: State, held: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> list[CellStep]:
        """One layer over inputs [batch, time, input] with its gates, one CellStep per time step, as
        LSTMLanguageModel.layer_gates (textlstm/model/gates.py); the same step as `_layers_step`."""
        h, c = state
        steps = []
        for x in inputs.unbind(1):
            steps.append(cell_update(self._pre_activations(layer, x, h), c, held))
            h, c = steps[-1].hidden, steps[-1].cell
        return steps

    def _pre_activations(self, layer: int, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The four gates' inputs [batch, 4 * hidden] of one layer (torch.lstm_cell's gate order)."""
        if self.mogrifiers is not None:
            x, h = self.mogrifiers[layer](x, h)
        if layer == 0:
            return torch.addmm(self.input_bias, x, self.input_weight.t()) + self.gates[0](h)
        return self.gates[layer](x, h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token scores [..., vocab] for hidden [..., hidden], as LSTMLanguageModel.logits."""
        if self.adaptive is not None:
            flat = self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1]))
            return flat.reshape(*hidden.shape[:-1], flat.shape[-1])
        scores = self.output(hidden)
        first_byte = self.config.byte_fallback_start
        if first_byte is None:
            return scores
        head_size = self.config.vocab_size - BYTE_TOKENS + 1
        return log_prob_from_scores(scores[..., :head_size], scores[..., head_size:], first_byte)


def _through_projection(model: LSTMLanguageModel, weight: torch.Tensor) -> torch.Tensor:
    """An output matrix as applied to the LSTM's output: W P when a projection P comes first."""
    return weight if model.projection is None else weight @ model.projection.weight


def _quantized_adaptive(adaptive: nn.AdaptiveLogSoftmaxWithLoss) -> nn.AdaptiveLogSoftmaxWithLoss:
    """A copy whose head and cluster layers are int8; its own log_prob runs them. A cluster's
    second layer reads the first one's output, which has no fixed bound."""
    adaptive = copy.deepcopy(adaptive)
    adaptive.head = Int8Linear(adaptive.head.weight, adaptive.head.bias)
    for cluster in adaptive.tail:
        down, out = cluster
        cluster[0] = Int8Linear(down.weight, down.bias)
        cluster[1] = Int8Linear(out.weight, out.bias, scale_rows=True)
    return adaptive


def quantize_int8(model: LSTMLanguageModel) -> QuantizedLanguageModel:
    """An int8 copy of a float32 model on the CPU, for sampling and scoring (not training)."""
    device = model.embedding.weight.device
    if device.type != "cpu":
        raise TextlstmError(
            f"int8 weights run on the CPU (fbgemm), and this model is on {device}: load it with device cpu"
        )
    if model.embedding.weight.dtype != torch.float32:
        raise TextlstmError(
            f"int8 weights are made from float32 weights; this model holds {model.embedding.weight.dtype}"
        )
    was_training = model.training
    model.eval()  # _layer_weights without the recurrent-dropout mask
    try:
        with torch.no_grad():
            return QuantizedLanguageModel(model).eval()
    finally:
        model.train(was_training)
