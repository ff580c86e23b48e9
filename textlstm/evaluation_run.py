"""Evaluate a checkpoint on held-out text: the Python entry point behind `textlstm eval`.

    from textlstm.evaluation_run import evaluate_checkpoint
    result = evaluate_checkpoint()                       # newest checkpoint, its own validation text
    result = evaluate_checkpoint("checkpoints/run", dataset="wikitext", dataset_config="wikitext-2-raw-v1", split="test")
    print(result.perplexity, result.bits_per_char)
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from textlstm.checkpoint import find_latest_checkpoint, load_checkpoint
from textlstm.config import DataConfig
from textlstm.corpora import Corpus, load_corpus
from textlstm.data import tokenize_splits
from textlstm.errors import TextlstmError
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
    corpus, what = _text_to_score(config.data, dataset, dataset_config, split, text_column)
    held_out = tokenize_splits(corpus, tokenizer)["valid"]
    if held_out.info.scored_tokens < 1:
        raise TextlstmError(f"{what} of the corpus '{corpus.name}' is empty: nothing to evaluate")
    result = evaluate_split(
        model, held_out.ids, held_out.info, batch_size=batch_size, seq_len=seq_len,
        device=model.embedding.weight.device, precision=check_precision(precision),
    )
    return dataclasses.replace(result, checkpoint=str(folder), text=f"{what}, from {corpus.source}")


def _text_to_score(
    trained_on: DataConfig, dataset: str | None, dataset_config: str | None, split: str | None, text_column: str | None
) -> tuple[Corpus, str]:
    """The corpus whose `valid` split is the text to score, and a description of that text."""
    if dataset is None:
        dataset = trained_on.dataset
        dataset_config = dataset_config or trained_on.dataset_config
        text_column = text_column or trained_on.text_column
        if split is None:
            corpus = load_corpus(
                dataset, config=dataset_config, split=trained_on.split,
                valid_split=trained_on.valid_split, text_column=text_column,
            )
            return corpus, "the validation text used in training"
    if split is None:
        return load_corpus(dataset, config=dataset_config, text_column=text_column), "the held-out validation text"
    # The named split, whole: as both "train" and "valid" so that nothing of it is held out.
    corpus = load_corpus(dataset, config=dataset_config, split=split, valid_split=split, text_column=text_column)
    return _valid_only(corpus), f"split '{split}'"


def _valid_only(corpus: Corpus) -> Corpus:
    """The corpus with an empty train split, so tokenize_splits encodes (and caches) only the text to score."""
    fingerprint = hashlib.sha256(f"eval only: {corpus.fingerprint}".encode()).hexdigest()[:16]
    return dataclasses.replace(corpus, train=corpus.valid.select([]), fingerprint=fingerprint)
