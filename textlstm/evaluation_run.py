"""Evaluate a checkpoint on held-out text: the Python entry point behind `textlstm eval`.

    from textlstm.evaluation_run import evaluate_checkpoint
    result = evaluate_checkpoint()                       # newest checkpoint, its own validation text
    result = evaluate_checkpoint("checkpoints/run", dataset="wikitext", dataset_config="wikitext-2-raw-v1", split="test")
    print(result.perplexity, result.bits_per_char)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from textlstm.checkpoint import find_latest_checkpoint, load_checkpoint
from textlstm.config import DataConfig
from textlstm.data import prepare
from textlstm.evaluate import EvalResult, evaluate_split
from textlstm.precision import check_precision
from textlstm.device import resolve_device


def evaluate_checkpoint(
    checkpoint: str | Path | None = None,
    *,
    dataset: str | None = None,
    dataset_config: str | None = None,
    split: str | None = None,
    text_column: str | None = None,
    batch_size: int = 32,
    seq_len: int = 256,
    device: str = "auto",
    precision: str = "float32",
) -> EvalResult:
    """Loss, perplexity and bits per token/char/byte of a checkpoint on one split of text.

    checkpoint: a checkpoint folder; default the newest one under ./checkpoints.
    dataset: any form `textlstm train --dataset` accepts; default the corpus the checkpoint was trained on.
    split: the split to score, whole; default the validation text training held out.
    The text is tokenized with the checkpoint's own tokenizer. The result does not depend on
    batch_size or seq_len (they only trade memory for speed). precision "bfloat16" runs the model
    under bfloat16 autocast: faster, with a loss that differs in about the third significant digit.
    """
    folder = Path(checkpoint) if checkpoint is not None else find_latest_checkpoint()
    model, tokenizer, config = load_checkpoint(folder, device=resolve_device(device))
    data, what = _text_to_score(config.data, dataset, dataset_config, split, text_column)
    prepared = prepare(data, tokenizer, splits=("valid",))
    held_out = prepared.splits["valid"]
    result = evaluate_split(
        model, held_out.ids, held_out.info, batch_size=batch_size, seq_len=seq_len,
        device=model.embedding.weight.device, precision=check_precision(precision),
    )
    return dataclasses.replace(result, checkpoint=str(folder), text=f"{what}, from {prepared.corpus.source}")


def _text_to_score(
    trained_on: DataConfig, dataset: str | None, dataset_config: str | None, split: str | None, text_column: str | None
) -> tuple[DataConfig, str]:
    """Data settings whose validation split is the text to score, and a description of that text."""
    if dataset is None:
        data = dataclasses.replace(
            trained_on,
            dataset_config=dataset_config or trained_on.dataset_config,
            text_column=text_column or trained_on.text_column,
        )
        what = "the validation text used in training"
    else:
        defaults = DataConfig()
        data = dataclasses.replace(
            trained_on, dataset=dataset, dataset_config=dataset_config, text_column=text_column,
            split=defaults.split, valid_split=defaults.valid_split,
        )
        what = "the held-out validation text"
    if split is None:
        return data, what
    # The named split, whole: as both "train" and "valid" so that nothing of it is held out.
    return dataclasses.replace(data, split=split, valid_split=split), f"split '{split}'"
