"""A checkpoint loaded to run, not to train: on the device and in the precision asked for ("auto"
resolved as training would), with int8 weights on request. `generate`, `chat`, `serve` and `inspect`
all load through here, so they take the same options and refuse the same things."""

from __future__ import annotations

from pathlib import Path

import torch

from textlstm.config import RunConfig
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import check_precision, training_precision
from textlstm.model.network import LSTMLanguageModel
from textlstm.model.quantized import QUANTIZATIONS, quantize_int8
from textlstm.runs.checkpoint import find_latest_checkpoint, load_checkpoint
from textlstm.runs.hub import resolve_checkpoint


def resolve_hardware(device: str, precision: str, quantize: str | None = None) -> tuple[torch.device, str]:
    """The device and precision a model runs in, "auto" resolved; what int8 weights cannot do is
    refused, before anything is loaded."""
    if quantize is not None:  # int8 weights are float32 ones quantized, for the CPU: auto means those
        device, precision = ("cpu" if device == "auto" else device), ("float32" if precision == "auto" else precision)
        _check_quantization(quantize, precision, device)
    device = resolve_device(device)
    return device, training_precision(precision, device)  # auto: the precision training would choose here


def _check_quantization(quantize: str, precision: str, device: str) -> None:
    """Refuse what int8 weights cannot do, before anything is loaded."""
    if quantize not in QUANTIZATIONS:
        raise TextlstmError(
            f"quantize must be {' or '.join(QUANTIZATIONS)} (or None for float weights), got {quantize!r}"
        )
    if check_precision(precision) != "float32":
        raise TextlstmError(
            f"give --quantize int8 or --precision {precision}, not both: int8 weights are quantized from float32 ones"
        )
    if device.split(":")[0] != "cpu":  # fbgemm's int8 kernels are CPU code
        raise TextlstmError(
            f"int8 weights run on the CPU only: --quantize int8 needs --device cpu or auto, not {device!r}"
        )


def load_for_inference(
    checkpoint: str | Path | None,
    device: str,
    precision: str,
    quantize: str | None = None,
    threads: int | None = None,
) -> tuple[LSTMLanguageModel, TextTokenizer, RunConfig, Path]:
    """(model in eval mode, tokenizer, its settings, the checkpoint folder) of a folder or
    "hf://USER/NAME[@REVISION]" (None: the newest folder under ./checkpoints). threads: CPU threads
    for torch in this process (None: as they are)."""
    device, precision = resolve_hardware(device, precision, quantize)
    folder = resolve_checkpoint(checkpoint) if checkpoint is not None else find_latest_checkpoint()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    model, tokenizer, config = load_checkpoint(folder, device=device)
    if precision != "float32":
        model = model.to(getattr(torch, precision))
    if quantize is not None:
        model = quantize_int8(model)
    return model, tokenizer, config, folder
