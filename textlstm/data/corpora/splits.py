"""From a source as loaded to a Corpus: the text column, then the train and validation splits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textlstm.data.corpora.fingerprint import text_fingerprint
from textlstm.data.corpora.loaded import Loaded, Options
from textlstm.errors import TextlstmError
from textlstm.hardware.memory import page_out_array
from textlstm.turns import TurnFormat

OWN_VALID_SPLITS = ("validation", "valid", "dev")


@dataclass
class Corpus:
    """A corpus ready to tokenize: its train and validation text, and where that text came from."""

    name: str  # short, filesystem-safe: used for run folders
    train: datasets.Dataset  # one column, "text"
    valid: datasets.Dataset  # one column, "text"
    documents: bool  # True: rows are separate documents; False: rows are pieces of one running text
    fingerprint: str  # same text and options -> same string; a cache key for tokenized ids
    source: str  # human-readable description of where the text came from
    turns: TurnFormat | None = None  # the card's [chat] table, if it has one


def make_corpus(loaded: Loaded, options: Options) -> Corpus:
    if not 0 < options.valid_fraction < 1:
        raise TextlstmError(f"valid_fraction must be between 0 and 1, not {options.valid_fraction}")
    train = _pick_split(loaded, options.split)
    column = _choose_text_column(train, options.text_column)
    train = _only_text(train, column, loaded.name, options.split)
    if character_count(train) == 0:
        raise TextlstmError(f"the corpus '{loaded.name}' is empty (no text in split '{options.split}')")
    valid_name = options.valid_split or next(
        (name for name in OWN_VALID_SPLITS if name in loaded.splits and name != options.split), None
    )
    if valid_name:
        valid = _only_text(_pick_split(loaded, valid_name), column, loaded.name, valid_name)
        if character_count(valid) == 0:
            raise TextlstmError(f"the validation split '{valid_name}' of the corpus '{loaded.name}' is empty")
    else:
        train, valid = _hold_out_tail(train, options.valid_fraction, loaded.name)
    return Corpus(
        name=loaded.name,
        train=train,
        valid=valid,
        documents=loaded.documents,
        fingerprint=text_fingerprint(train, valid, loaded.documents),
        source=loaded.source,
        turns=loaded.turns,
    )


def _pick_split(loaded: Loaded, split: str) -> datasets.Dataset:
    if split not in loaded.splits:
        available = ", ".join(sorted(loaded.splits))
        raise TextlstmError(f"the corpus '{loaded.name}' has no split '{split}' (available: {available})")
    return loaded.splits[split]


def _is_string_type(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _choose_text_column(dataset: datasets.Dataset, text_column: str | None) -> str:
    """The named column, else "text", else the only string column."""
    if text_column is not None:
        return text_column
    if "text" in dataset.column_names:
        return "text"
    schema = dataset.data.schema
    string_columns = [field.name for field in schema if _is_string_type(field.type)]
    if len(string_columns) == 1:
        return string_columns[0]
    raise TextlstmError(
        f"cannot tell which column holds the text (columns: {_list_columns(dataset)}); pass text_column"
    )


def _list_columns(dataset: datasets.Dataset) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in dataset.data.schema) or "none"


def _only_text(dataset: datasets.Dataset, column: str, name: str, split: str) -> datasets.Dataset:
    """Just the text column, named "text", without null rows and without an indices mapping."""
    if column not in dataset.column_names:
        raise TextlstmError(
            f"the corpus '{name}' has no column '{column}' in split '{split}' (columns: {_list_columns(dataset)})"
        )
    data_type = dataset.data.schema.field(column).type
    if not _is_string_type(data_type):
        raise TextlstmError(f"column '{column}' of the corpus '{name}' holds {data_type}, not text")
    dataset = dataset.select_columns([column])
    if column != "text":
        dataset = dataset.rename_column(column, "text")
    # The Arrow-level code below reads dataset.data directly, which ignores an indices mapping.
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    if dataset.data.column("text").null_count:
        dataset = dataset.filter(lambda texts: [text is not None for text in texts], input_columns="text", batched=True)
        dataset = dataset.flatten_indices()
    return dataset


# Chunk by chunk: a 1 GB text file is 40 million rows, and arrays of all their lengths took 800 MB.
def _chunk_lengths(dataset: datasets.Dataset) -> Iterator[np.ndarray]:
    for chunk in dataset.data.column("text").chunks:
        lengths = pc.utf8_length(chunk).to_numpy(zero_copy_only=False).astype(np.int64)
        page_out_array(chunk)  # counting characters reads all the text
        yield lengths


def character_count(dataset: datasets.Dataset) -> int:
    return sum(int(lengths.sum()) for lengths in _chunk_lengths(dataset))


def row_holding(chunk_lengths: Iterable[np.ndarray], position: int) -> tuple[int, int]:
    """The first row that ends after character `position`, and the characters of the rows before it.

    chunk_lengths: the rows' lengths in characters, chunk by chunk (read only up to that row)."""
    rows_before = chars_before = 0
    for lengths in chunk_lengths:
        ends = chars_before + np.cumsum(lengths)
        if len(ends) and ends[-1] > position:
            row = int(np.searchsorted(ends, position, side="right"))
            return rows_before + row, int(ends[row] - lengths[row])
        rows_before += len(lengths)
        chars_before = int(ends[-1]) if len(ends) else chars_before
    raise ValueError(f"character {position} is past the end of the text")


def tail_boundary(total: int, valid_fraction: float, name: str) -> int:
    """Where validation starts when a corpus of `total` characters holds out its last `valid_fraction`.

    The one hold-out rule: a stored corpus (below) and a streamed one of local files (data/streaming.py)
    both cut here, in the row that straddles it, so they validate on the same text."""
    boundary = int(total * (1 - valid_fraction))
    if boundary == 0 or boundary == total:
        raise TextlstmError(
            f"the corpus '{name}' is too small ({total} characters) to hold out {valid_fraction:g} of it for validation"
        )
    return boundary


def _hold_out_tail(
    train: datasets.Dataset, valid_fraction: float, name: str
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Move the last `valid_fraction` of the characters to validation, cutting the row that straddles the boundary."""
    boundary = tail_boundary(character_count(train), valid_fraction, name)
    row, chars_before = row_holding(_chunk_lengths(train), boundary)
    cut = boundary - chars_before
    text = train[row]["text"]
    before = [train.select(range(row))] if row else []
    after = [train.select(range(row + 1, len(train)))] if row + 1 < len(train) else []
    head = _concatenate(before + [_text_rows(train, text[:cut])])
    tail = _concatenate([_text_rows(train, text[cut:])] + after)
    return head, tail


def _text_rows(like: datasets.Dataset, text: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": [text] if text else []}, features=like.features)


def _concatenate(parts: list[datasets.Dataset]) -> datasets.Dataset:
    return datasets.concatenate_datasets([part for part in parts if len(part)])
