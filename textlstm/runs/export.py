"""Exporting a trained model to ONNX, so that it runs without textlstm or torch (onnxruntime, any language).

The export folder holds:
    model.onnx       the step graph (below)
    tokenizer.json   the run's tokenizer
    config.json      the run's config.json with an "export" entry, what a runner needs: the format
                     and its version, the weights' quantization, the padding and end-of-text ids,
                     the vocabulary size, layers and hidden size, and the graph's input and output names

The step graph reads token ids int64 [batch, time] from the state h, c float32 [layers, batch, hidden]
and gives the next token's log-probabilities over the whole vocabulary, float32 [batch, time, vocab],
whatever the output layer (full, byte-fallback or adaptive softmax), and the state after the last
step. Batch and time are dynamic: a runner reads a prompt in one run of the graph, then one token
per run, carrying h and c (examples/onnx_generate.py). Every row reads all `time` ids: a shorter row
padded at its end gets its log-probabilities right up to its length, but its state reads the padding.

The graph comes from torch's TorchScript-based exporter (dynamo=False), which writes each layer as
an ONNX LSTM op over a dynamic number of steps. The torch.export-based exporter (torch 2.13) unrolls
torch.lstm over the steps of the example input, so its graph reads exactly that many tokens. For the
same reason a --cell mogrifier model, whose loop over time steps is Python, is refused.

With quantize="int8", model.onnx is that graph with int8 weights, from onnxruntime's dynamic
quantization of the float32 graph (written beside it under a temporary name, checked, then
removed): each LSTM op becomes onnxruntime's DynamicQuantizeLSTM (com.microsoft, so the graph runs
in onnxruntime only) and each MatMul of the output layer a MatMulInteger, with one scale per
output unit; activations are quantized to uint8 at run time over the range of the whole tensor, so
a row's numbers depend slightly on the other rows and steps read with it. The embedding stays
float32: a lookup reads one row, and its int8 dequantization would run over the whole matrix.

Every file is written atomically (textlstm/fileio.py), config.json last; model.onnx is run in
onnxruntime and compared with the model before it takes its name.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from textlstm.config import RunConfig
from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write, write_text
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, load_checkpoint, load_config, weights_step
from textlstm.tokens import EOT_ID, PAD_ID

FORMAT_VERSION = 1  # of the export folder: raised when a runner would have to read it differently
MODEL = "model.onnx"
INPUTS = ("ids", "h", "c")
OUTPUTS = ("log_probs", "h_new", "c_new")
OPSET = 17  # ONNX 1.12 (2022): old enough for most runtimes, new enough for every op the graph uses
MAX_WEIGHT_BYTES = 2**31 - 2**26  # an ONNX file is one protobuf message, at most 2 GiB: room left for the graph
TOLERANCE = 1e-3  # the largest difference from PyTorch the check of a new graph allows (measured: ~1e-6)
QUANTIZATIONS = ("int8",)
# The largest mean KL divergence per token (nats) of the int8 graph from the float32 model that its
# check allows. Measured on the check's input: 0.7-2.4e-4 for char models of 2 x 32 (untrained),
# 2 x 64 and 2 x 512 (trained briefly); the int8 graph of other weights (each x 1.5): 0.46-0.77.
INT8_KL_TOLERANCE = 0.01
QUANTIZED_OPS = ["LSTM", "MatMul"]  # onnxruntime's dynamic quantizer; a Gather would quantize the embedding
INSTALL_HINT = "pip install 'textlstm[export]'"


class StepGraph(nn.Module):
    """What model.onnx computes: ids [batch, time] and h, c in; full log-probabilities and the new h, c out."""

    def __init__(self, model: LSTMLanguageModel):
        super().__init__()
        self.model = model

    def forward(
        self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden, (h, c) = self.model.hidden_states(ids, (h, c))
        # Logits of the full softmax, log-probabilities already of the other two: log_softmax normalizes both.
        return F.log_softmax(self.model.logits(hidden).float(), dim=-1), h, c


def export_onnx(run: Path, output: Path, overwrite: bool = False, quantize: str | None = None) -> list[Path]:
    """Write the ONNX export of the run folder `run` into the folder `output`; returns the files written.
    quantize="int8": model.onnx with int8 weights (the module's docstring)."""
    run, output = Path(run), Path(output)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise TextlstmError(f"unknown quantization {quantize!r}: the export knows {', '.join(QUANTIZATIONS)}")
    _require_export_extra()
    config = load_config(run)
    _check_exportable(run, config)
    _check_output(run, output, overwrite)
    model, tokenizer, _ = load_checkpoint(run)
    _check_size(run, model)
    graph = StepGraph(model.float()).eval()
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / MODEL, output / TOKENIZER, output / CONFIG]
    atomic_write(paths[0], lambda tmp: _write_checked_graph(graph, tmp, quantize))
    atomic_write(paths[1], tokenizer.save)
    write_text(paths[2], export_config(config, weights_step(run / BEST_WEIGHTS), quantize))
    return paths


def _require_export_extra() -> None:
    try:
        import onnx  # noqa: F401 (torch's exporter needs it)
        import onnxruntime  # noqa: F401 (the check of the written graph)
    except ImportError as error:
        raise TextlstmError(
            f"ONNX export needs the export extra ({error.name} is not installed): {INSTALL_HINT}"
        ) from None


def _check_exportable(run: Path, config: RunConfig) -> None:
    if config.model.cell == "mogrifier":
        raise TextlstmError(
            f"{run} is a --cell mogrifier model, which ONNX export does not support: its cell steps through time "
            "in Python, so the graph would read only as many tokens as the example it was traced with"
        )


def _check_size(run: Path, model: LSTMLanguageModel) -> None:
    weight_bytes = 4 * sum(parameter.numel() for parameter in model.parameters())  # float32
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise TextlstmError(
            f"{run} has {weight_bytes / 2**30:.1f} GiB of float32 weights: model.onnx, one file, holds at most "
            f"{MAX_WEIGHT_BYTES / 2**30:.2f} GiB"
        )


def _check_output(run: Path, output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise TextlstmError(f"{output} is a file: give a folder to export into")
    if not output.is_dir():
        return
    if output.resolve() == run.resolve():
        raise TextlstmError(f"{output} is the run folder itself: export into another folder")
    if any(output.iterdir()) and not overwrite:
        raise TextlstmError(
            f"{output} is not empty: give a new folder, "
            f"or pass --overwrite to replace its {MODEL}, {TOKENIZER} and {CONFIG}"
        )


def export_config(config: RunConfig, step: int, quantize: str | None = None) -> str:
    """config.json of the export: the run's settings, and under "export" what a runner needs."""
    model = config.model
    export = {
        "format": "onnx",
        "format_version": FORMAT_VERSION,
        "step": step,  # the training step of the exported weights
        "quantize": quantize,  # None: float32 weights
        "pad_id": PAD_ID,
        "eot_id": EOT_ID,
        "vocab_size": model.vocab_size,
        "layers": model.layers,
        "hidden_size": model.hidden_size,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
    }
    return json.dumps({**json.loads(config.to_json()), "export": export}, indent=2) + "\n"


def _write_checked_graph(graph: StepGraph, path: Path, quantize: str | None) -> None:
    if quantize is None:
        _write_graph(graph, path)
        _check_graph(graph, path)
        return
    with tempfile.TemporaryDirectory(prefix=".float32-", dir=path.parent) as folder:
        float_path = Path(folder) / "model.float32.onnx"
        _write_graph(graph, float_path)
        _check_graph(graph, float_path)
        _quantize_graph(float_path, path)
    _check_quantized_graph(graph, path)


def _write_graph(graph: StepGraph, path: Path) -> None:
    ids, h, c = _example_inputs(graph.model.config, batch=2, time=3)
    dynamic = {"ids": {0: "batch", 1: "time"}, "log_probs": {0: "batch", 1: "time"}}
    dynamic |= {name: {1: "batch"} for name in ("h", "c", "h_new", "c_new")}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning)
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        # Its advice (make h0/c0 inputs of the model) is what the graph does already.
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1", UserWarning)
        torch.onnx.export(
            graph,
            (ids, h, c),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=dynamic,
        )


def _check_graph(graph: StepGraph, path: Path) -> None:
    """Run the written graph in onnxruntime at another batch size and length than the export's, from
    a state that is not zero, and compare it with the model: a graph that fixed a shape, or computes
    something else, is never handed over."""
    inputs = _example_inputs(graph.model.config, batch=3, time=7, seed=0)
    got = _run(_checked_session(path), *inputs)
    with torch.no_grad():
        expected = graph(*inputs)
    difference = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    if not difference <= TOLERANCE:
        raise TextlstmError(
            f"the exported graph does not compute what the model does "
            f"(they differ by {difference:.3g}): {MODEL} not written"
        )


class _NoPreprocessingAdvice(logging.Filter):
    """The quantizer advises onnxruntime's pre-processing (shape inference and graph fusions, to find
    more ops to quantize) on every call: here every LSTM and MatMul is quantized without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize_graph(float_path: Path, path: Path) -> None:
    """The graph at float_path with int8 weights, written to path. The quantizer makes the LSTM's
    weights signed whatever it is asked; the MatMuls' are signed too (QInt8): unsigned ones measured
    the same step time and KL divergence on a 2 x 512 char model. reduce_range: weights in 7 bits, as
    onnxruntime advises for CPUs without VNNI, whose 8 x 8-bit products saturate 16-bit sums: on an
    AVX2-only EPYC a test model's mean KL divergence from float32 was 5.7e-3 nats per token with
    8 bits, 1.6e-4 with 7 (1.0e-4 with 8 bits on a CPU with VNNI)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    advice = _NoPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(
            float_path,
            path,
            op_types_to_quantize=QUANTIZED_OPS,
            per_channel=True,
            weight_type=QuantType.QInt8,
            reduce_range=True,
        )
    finally:
        logging.getLogger().removeFilter(advice)


def _check_quantized_graph(graph: StepGraph, path: Path) -> None:
    """Run the int8 graph in onnxruntime and compare its log-probabilities with the float32 model's by
    their mean KL divergence per token (int8 rounding moves a log-probability by ~0.1, far more than
    float32's check allows). It reads the input in two runs, the second from the first's h_new and
    c_new, so the state it hands on is checked too."""
    ids, h, c = _example_inputs(graph.model.config, batch=3, time=64, seed=0)
    session = _checked_session(path)
    first, h_new, c_new = _run(session, ids[:, :32], h, c)
    second, _, _ = _run(session, ids[:, 32:], torch.from_numpy(h_new), torch.from_numpy(c_new))
    with torch.no_grad():
        expected = graph(ids, h, c)[0].double().numpy()
    got = np.concatenate([first, second], axis=1).astype(np.float64)
    divergence = float((np.exp(expected) * (expected - got)).sum(-1).mean())
    if not divergence <= INT8_KL_TOLERANCE:
        raise TextlstmError(
            f"the int8 graph is far from the float32 model (a mean KL divergence of {divergence:.3g} nats per token, "
            f"more than {INT8_KL_TOLERANCE}): {MODEL} not written"
        )


def _checked_session(path: Path):
    """An onnxruntime session on the CPU for the graph at path, once onnx's checker passes it."""
    import onnx
    import onnxruntime

    onnx.checker.check_model(str(path))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a tiny run: more threads would only wait for each other
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> list[np.ndarray]:
    return session.run(list(OUTPUTS), {name: tensor.numpy() for name, tensor in zip(INPUTS, (ids, h, c))})


def _example_inputs(config, batch: int, time: int, seed: int | None = None) -> tuple[torch.Tensor, ...]:
    """ids [batch, time] and h, c [layers, batch, hidden]: zeros, or random ones from `seed`."""
    shape = (config.layers, batch, config.hidden_size)
    if seed is None:
        return torch.full((batch, time), EOT_ID), torch.zeros(shape), torch.zeros(shape)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch, time), generator=generator)
    return ids, torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
