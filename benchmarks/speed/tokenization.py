"""Tokenization speed: MB/s of encoding a text with textlstm's char, word and BPE tokenizers,
cut into pieces and encoded in batches the way `textlstm.data.token_ids` encodes a corpus."""

from __future__ import annotations

import statistics
import time

import numpy as np

from textlstm.data.text_pieces import split_long_text
from textlstm.data.token_ids import ENCODE_BATCH
from textlstm.data.tokenizer import TextTokenizer, build_tokenizer


def build_all(text: str) -> dict[str, TextTokenizer]:
    pieces = list(split_long_text(text))
    return {
        "char": build_tokenizer("char", pieces),
        "word": build_tokenizer("word", pieces, 10_000),
        "bpe": build_tokenizer("bpe", pieces, 4_096),
    }


def encode_all(tokenizer: TextTokenizer, text: str) -> np.ndarray:
    pieces = list(split_long_text(text))
    ids = []
    for start in range(0, len(pieces), ENCODE_BATCH):
        ids.extend(tokenizer.encode_arrays(pieces[start : start + ENCODE_BATCH]))
    return np.concatenate(ids)


def megabytes_per_second(tokenizers: dict[str, TextTokenizer], text: str, rounds: int) -> dict[str, float]:
    size_mb = len(text.encode()) / 1e6
    times: dict[str, list[float]] = {name: [] for name in tokenizers}
    for _ in range(rounds):
        for name, tokenizer in tokenizers.items():
            start = time.perf_counter()
            encode_all(tokenizer, text)
            times[name].append(time.perf_counter() - start)
    return {name: size_mb / statistics.median(values) for name, values in times.items()}
