"""The network: Embedding -> masking -> stacked LSTM -> dropout -> Linear (-> softmax in the loss).

Masking: the embedding has a padding index, and when `lengths` are given the LSTM runs on a packed
sequence, so padded steps neither change the recurrent state nor produce outputs; the loss ignores
the padding id.

One LSTM, two ways to run it, both on the same per-layer weights (`_layer_weights`, which applies
recurrent dropout in training): `forward` / `hidden_states` / `loss` read whole sequences (training,
scoring, prompts) through the fused kernel, and `step` reads one token per row (sampling, serving).
Nothing outside this module reads the LSTM's weights but textlstm/model/quantized.py, which copies
them into int8 through `_layer_weights`, and textlstm/model/packed_gates.py, which lays them out
for `step` in bfloat16 on the CPU.

`layer_gates` is the same step with its gates in the open (textlstm/model/gates.py: `textlstm
inspect` records them): the same weights, the same Mogrifier, torch.lstm_cell's arithmetic written out.

With `cell` "mogrifier" each layer's input and previous hidden state first gate each other
(textlstm/model/mogrifier.py). That depends on h(t-1), so no fused kernel runs it: whole sequences run
one time step at a time through `_cell_step`, the function `step` calls; padded documents run as
the padded tensor with each row's state held past its length.

The output layer is a Linear layer over the vocabulary, an adaptive softmax (`output_layer`
"adaptive"), or for a char tokenizer's vocabulary the byte-fallback softmax (textlstm/model/byte_softmax.py:
the 256 byte tokens share one output). The trainer starts the output biases at the log unigram
frequencies of the training text (`init_output_bias`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from textlstm.config import ModelConfig
from textlstm.model.activation_penalty import activation_penalty
from textlstm.model.byte_softmax import ByteFallbackSoftmax
from textlstm.model.dropout import FastDropout, drop_recurrent_columns, embedding_row_scales
from textlstm.model.gates import CellStep, cell_update
from textlstm.model.mogrifier import Mogrifier
from textlstm.model.packed_gates import packed_gates
from textlstm.tokens import PAD_ID

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each [layers, batch, hidden]


class LSTMLanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set (it comes from the tokenizer)")
        unset = [name for name in ("embedding_size", "hidden_size", "layers") if getattr(config, name) is None]
        if unset:
            raise ValueError(
                f"ModelConfig.{', '.join(unset)} must be set: None is auto, which training plans (see budget_plan.py)"
            )
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.layers,
            batch_first=True,  # a container of the weights: _run_lstm and step run them
        )
        self.mogrifiers = None
        if config.cell == "mogrifier":
            input_sizes = [config.embedding_size] + [config.hidden_size] * (config.layers - 1)
            self.mogrifiers = nn.ModuleList(
                Mogrifier(size, config.hidden_size, config.mogrifier_rounds) for size in input_sizes
            )
        self.dropout = FastDropout(config.dropout or 0.0)  # None: auto, never resolved (not built by training)
        output_size = config.hidden_size
        self.projection = None
        if config.tie_weights and config.hidden_size != config.embedding_size:
            self.projection = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
            output_size = config.embedding_size
        self.decoder, self.adaptive, self.byte_softmax = None, None, None
        if config.output_layer == "adaptive":
            cutoffs = config.adaptive_cutoffs or default_cutoffs(config.vocab_size)
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(output_size, config.vocab_size, cutoffs, div_value=4.0)
        elif config.byte_fallback_start is not None:
            self.byte_softmax = ByteFallbackSoftmax(output_size, config.vocab_size, config.byte_fallback_start)
        else:
            self.decoder = nn.Linear(output_size, config.vocab_size)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # PyTorch's own initializations learn fastest here: a small uniform embedding (AWD-LSTM's) or
        # an open forget gate kept char models on the unigram plateau for hundreds of steps (measured).
        # A tied embedding is also the output matrix, so it starts small to keep the first logits sane.
        if self.config.tie_weights:
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        if self.decoder is not None:
            nn.init.zeros_(self.decoder.bias)
        if self.byte_softmax is not None:
            nn.init.zeros_(self.byte_softmax.head.bias)

    @torch.no_grad()
    def init_output_bias(self, counts: np.ndarray) -> None:
        """Start the output biases at the log unigram frequencies of the training tokens (`counts`:
        occurrences of each id), so the first prediction is the unigram distribution, not a uniform
        one; tokens never seen count as half an occurrence. Adam moves a bias by about lr per step,
        so from zero the ~250 byte tokens a char model never sees held most of the probability for
        hundreds of steps (benchmarks/experiments/e2026_11_25_early_learning). The adaptive softmax has
        no bias."""
        counts = torch.as_tensor(np.asarray(counts, dtype=np.float64))
        if self.byte_softmax is not None:
            head = self.byte_softmax.head_index(torch.arange(len(counts)))
            counts, bias = (
                torch.zeros(self.byte_softmax.head.out_features, dtype=torch.float64).index_add_(0, head, counts),
                self.byte_softmax.head.bias,
            )
        elif self.decoder is not None:
            bias = self.decoder.bias
        else:
            return
        bias.copy_(torch.log(counts.clamp(min=0.5) / counts.sum().clamp(min=1)))

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        shape = (self.config.layers, batch_size, self.config.hidden_size)
        weight = self.embedding.weight
        device = device or weight.device
        # The weights' dtype, so a model held in bfloat16 (for sampling) gets a bfloat16 state.
        return torch.zeros(shape, device=device, dtype=weight.dtype), torch.zeros(
            shape, device=device, dtype=weight.dtype
        )

    def forward(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits [batch, time, vocab] for ids [batch, time], and the state after the last real step.

        With `lengths` (one per row, on the CPU), steps past each row's length are padding.
        """
        hidden, state = self.hidden_states(ids, state, lengths)
        return self.logits(hidden), state

    def hidden_states(
        self, ids: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """What the output layer reads: the last LSTM layer's outputs after dropout."""
        outputs, state = self._lstm_outputs(ids, state, lengths)
        return self.dropout(outputs), state

    def _lstm_outputs(self, ids, state, lengths) -> tuple[torch.Tensor, State]:
        """The last LSTM layer's outputs [batch, time, hidden] (zero at padding), before dropout."""
        if state is None:
            state = self.initial_state(ids.shape[0], ids.device)
        x = self.dropout(self._embed(ids))
        if lengths is not None:
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, state = self._run_lstm(x, state)
        if lengths is not None:
            x, _ = pad_packed_sequence(x, batch_first=True, padding_value=0.0, total_length=ids.shape[1])
        return x, state

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """The embeddings of ids; in training with embedding dropout, each vocabulary row dropped
        for the whole call (all its occurrences in the batch) with probability p, the rest scaled
        by 1 / (1 - p)."""
        vectors = self.embedding(ids)
        p = self.config.embedding_dropout
        if not self.training or p == 0:
            return vectors
        scales = embedding_row_scales(self.config.vocab_size, p, vectors.device, vectors.dtype)
        return vectors * scales[ids].unsqueeze(-1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token scores [..., vocab] for hidden [..., hidden]: logits, or with the adaptive softmax
        its full log-probabilities (already normalized, so softmax and temperature treat them as logits)."""
        hidden = self._project(hidden)
        if self.byte_softmax is not None:
            return self.byte_softmax.log_prob(hidden)
        if self.adaptive is not None:
            with _full_precision(
                hidden
            ):  # in the weights' dtype: float32 under autocast, else the one they are held in
                flat = self.adaptive.log_prob(hidden.reshape(-1, hidden.shape[-1]).to(self.adaptive.head.weight.dtype))
            return flat.reshape(*hidden.shape[:-1], flat.shape[-1])
        return self.decoder(hidden)

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states in the output layer's size (the embedding size when tied to a smaller embedding)."""
        return hidden if self.projection is None else self.projection(hidden)

    def step(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Read one token per row: logits [batch, vocab] for the next token, and the new state.

        ids: [batch] token ids. The same network as `forward`, one time step at a time through
        `torch.lstm_cell`: on the CPU the fused sequence kernel re-lays out the weights on every
        call, which at one step costs about ten times the step itself. bfloat16 weights in
        inference on the CPU step through gate weights laid out once (model/packed_gates.py).
        """
        if state is None:
            state = self.initial_state(ids.shape[0], ids.device)
        x = self.dropout(self._embed(ids))
        h, c = state
        hs, cs = [], []
        packed = packed_gates(self, self._layer_weights)  # bfloat16 on the CPU: textlstm/model/packed_gates.py
        for layer in range(self.config.layers):
            if layer > 0:
                x = self.dropout(x)
            if packed is not None:
                x, c_layer = packed.cell_step(layer, x, (h[layer], c[layer]))
            else:
                x, c_layer = self._cell_step(layer, x, (h[layer], c[layer]), self._layer_weights(layer))
            hs.append(x)
            cs.append(c_layer)
        return self.logits(self.dropout(x)), (torch.stack(hs), torch.stack(cs))

    def _cell_step(
        self, layer: int, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], weights: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step of one layer: (h, c) after reading x [batch, input] from `state` ([batch, hidden] each)."""
        h, c = state
        if self.mogrifiers is not None:
            x, h = self.mogrifiers[layer](x, h)
        return torch.lstm_cell(x, (h, c), *weights)

    def layer_gates(
        self,
        layer: int,
        inputs: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        held: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[CellStep]:
        """One layer over a sequence with its gates: inputs [batch, time, input] (the embeddings or the
        layer below's h) read from `state` ([batch, hidden] each); one CellStep per time step. What
        `step` computes in eval mode (no dropout), written out so the gates can be read; `held`
        (mask, values) pins chosen cells of c (textlstm/model/gates.py)."""
        w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer)
        h, c = state
        mogrifier = None if self.mogrifiers is None else self.mogrifiers[layer]
        # Without a Mogrifier the input's share of the gates does not depend on h: one product for all steps.
        projected = None if mogrifier is not None else F.linear(inputs, w_ih, b_ih + b_hh).unbind(1)
        w_hh_t, cast = w_hh.t(), h.dtype != torch.float32  # the gates come in float32
        steps = []
        for t, x in enumerate(inputs.unbind(1)):
            if mogrifier is None:
                pre = torch.addmm(projected[t], h, w_hh_t)
            else:
                x, h_mogrified = mogrifier(x, h)
                pre = F.linear(x, w_ih, b_ih) + F.linear(h_mogrified, w_hh, b_hh)
            steps.append(cell_update(pre, c, held))
            h, c = steps[-1].hidden, steps[-1].cell
            if cast:
                h, c = h.to(inputs.dtype), c.to(inputs.dtype)
        return steps

    def _layer_weights(self, layer: int) -> list[torch.Tensor]:
        """W_ih, W_hh, b_ih, b_hh of one layer; in training W_hh carries the recurrent-dropout mask."""
        w_ih, w_hh, b_ih, b_hh = (
            getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        if self.training:
            w_hh = drop_recurrent_columns(w_hh, self.config.recurrent_dropout or 0.0)
        return [w_ih, w_hh, b_ih, b_hh]

    def _run_lstm(self, x: torch.Tensor | PackedSequence, state: State):
        """The stacked LSTM one layer at a time through `torch.lstm` (the fused kernel nn.LSTM calls),
        with FastDropout between layers; a packed sequence (padded documents) runs the same way."""
        if self.mogrifiers is not None:
            return self._run_step_by_step(x, state)
        packed = isinstance(x, PackedSequence)
        h, c = state
        if packed and x.sorted_indices is not None:  # the packed kernel wants the rows in length order
            h, c = h[:, x.sorted_indices], c[:, x.sorted_indices]
        data = x.data if packed else x
        hs, cs = [], []
        for layer in range(self.config.layers):
            if layer > 0:
                data = self.dropout(data)
            hx, params = (h[layer : layer + 1], c[layer : layer + 1]), self._layer_weights(layer)
            # torch.lstm(input, [batch_sizes,] hx, params, has_biases, num_layers, dropout, train, bidirectional
            #            [, batch_first])
            if packed:
                data, h_layer, c_layer = torch.lstm(data, x.batch_sizes, hx, params, True, 1, 0.0, self.training, False)
            else:
                data, h_layer, c_layer = torch.lstm(data, hx, params, True, 1, 0.0, self.training, False, True)
            hs.append(h_layer)
            cs.append(c_layer)
        h, c = torch.cat(hs), torch.cat(cs)
        if packed:
            if x.unsorted_indices is not None:
                h, c = h[:, x.unsorted_indices], c[:, x.unsorted_indices]
            return PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), (h, c)
        return data, (h, c)

    def _run_step_by_step(self, x: torch.Tensor | PackedSequence, state: State):
        """`_run_lstm` one time step at a time through `_cell_step` (the mogrifier's way). A packed
        sequence runs as its padded tensor: past a row's length its state stays as it was, and its
        outputs there are dropped when the result is packed again."""
        packed = isinstance(x, PackedSequence)
        if packed:
            data, lengths = pad_packed_sequence(x, batch_first=True)
            running = torch.arange(data.shape[1])[:, None] < lengths[None, :]  # [time, batch]: before the row's end
            running = running.to(data.device)[..., None]
        else:
            data = x
        h, c = state
        hs, cs = [], []
        for layer in range(self.config.layers):
            if layer > 0:
                data = self.dropout(data)
            weights = self._layer_weights(layer)  # once per layer: the recurrent-dropout mask is fixed over time
            h_layer, c_layer = h[layer], c[layer]
            outputs = []
            # unbind, not data[:, t]: the backward of each slice would fill a gradient of data's full size
            for t, x_t in enumerate(data.unbind(1)):
                h_new, c_new = self._cell_step(layer, x_t, (h_layer, c_layer), weights)
                if packed:
                    h_new, c_new = torch.where(running[t], h_new, h_layer), torch.where(running[t], c_new, c_layer)
                h_layer, c_layer = h_new, c_new
                outputs.append(h_layer)
            data = torch.stack(outputs, dim=1) if outputs else data.new_zeros(data.shape[0], 0, self.config.hidden_size)
            hs.append(h_layer)
            cs.append(c_layer)
        h, c = torch.stack(hs), torch.stack(cs)
        if packed:
            return pack_padded_sequence(data, lengths, batch_first=True, enforce_sorted=False), (h, c)
        return data, (h, c)

    def loss(
        self, ids: torch.Tensor, targets: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Summed cross-entropy (nats) over non-padding targets, their count, and the new state."""
        hidden, state = self.hidden_states(ids, state, lengths)
        total, count = self._summed_cross_entropy(hidden, targets)
        return total, count, state

    def regularized_loss(
        self,
        ids: torch.Tensor,
        targets: torch.Tensor,
        state: State | None,
        lengths: torch.Tensor | None,
        ar: float,
        tar: float,
    ) -> tuple[torch.Tensor, torch.Tensor, State, torch.Tensor | None]:
        """`loss`, and the AR/TAR penalty on the last LSTM layer's outputs (textlstm/model/activation_penalty.py)
        that training adds to the loss it backpropagates; None when ar and tar are 0."""
        if not (ar or tar):
            return *self.loss(ids, targets, state, lengths), None
        outputs, state = self._lstm_outputs(ids, state, lengths)
        hidden = self.dropout(outputs)
        total, count = self._summed_cross_entropy(hidden, targets)
        return total, count, state, activation_penalty(outputs, hidden, lengths, ar, tar)

    def _summed_cross_entropy(self, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = targets.reshape(-1) != PAD_ID
        count = keep.sum()
        if self.decoder is not None:
            logits = self.logits(hidden)
            total = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=PAD_ID, reduction="sum"
            )
            return total, count
        # Only the head and the clusters (or bytes) of the actual targets are computed: the point of
        # the adaptive and the byte-fallback softmax.
        hidden = self._project(hidden)
        if not bool(count):
            return hidden.sum() * 0.0, count
        hidden, targets = hidden.reshape(-1, hidden.shape[-1])[keep], targets.reshape(-1)[keep]
        if self.byte_softmax is not None:
            target_log_probs = self.byte_softmax.target_log_prob(hidden, targets)
        else:
            with _full_precision(hidden):
                target_log_probs, _ = self.adaptive(hidden.float(), targets)
        return -target_log_probs.float().sum(), count


def _full_precision(hidden: torch.Tensor):
    """Autocast off: the adaptive softmax copies float32 log-probabilities into a tensor of its input's
    dtype, which fails in half precision (pytorch/pytorch#44724), so it runs in float32."""
    return torch.autocast(hidden.device.type, enabled=False)


# --output-layer auto: the adaptive softmax from this vocabulary size up, in float32. At 4,096 BPE tokens
# it learned more in the same minutes than the full softmax, its steps being faster
# (benchmarks/experiments/e2026_12_07_tokenizer_race). Under bfloat16 or float16 autocast PyTorch's
# adaptive softmax mixes precisions and fails on CUDA (pytorch/pytorch#44724), so auto keeps the full one there.
ADAPTIVE_FROM = 4096


def model_config_for(model: ModelConfig, tokenizer, precision: str = "float32") -> ModelConfig:
    """`model` with the vocabulary of `tokenizer`, its output layer resolved where it is left at auto
    (ADAPTIVE_FROM, trained in `precision`; given cutoffs ask for the adaptive one), and a char tokenizer's
    byte tokens on their own small softmax when the output layer allows it (textlstm/model/byte_softmax.py)."""
    output_layer = model.output_layer
    if output_layer not in ("full", "adaptive"):  # auto
        large = tokenizer.vocab_size >= ADAPTIVE_FROM and precision == "float32"
        wanted = large or model.adaptive_cutoffs is not None
        output_layer = "adaptive" if wanted and not model.tie_weights else "full"
    byte_start = tokenizer.byte_fallback_start if output_layer == "full" and not model.tie_weights else None
    return dataclasses.replace(
        model, vocab_size=tokenizer.vocab_size, output_layer=output_layer, byte_fallback_start=byte_start
    )


def default_cutoffs(vocab_size: int) -> list[int]:
    """Cluster boundaries for the adaptive softmax: the 2,000 most frequent tokens in the head, the
    next 8,000 in one cluster, the rest in another; clipped to the vocabulary (word ids are in order
    of frequency after the special tokens)."""
    cutoffs = [cutoff for cutoff in (2_000, 10_000) if cutoff < vocab_size]
    return cutoffs or [max(1, vocab_size // 4)]


def detach_state(state: State) -> State:
    """The state cut from the graph, in float32 (it is bfloat16 after a step under autocast)."""
    return state[0].detach().float(), state[1].detach().float()
