"""The text of a corpus split, read in pieces of bounded size for the tokenizer to learn from or encode.

Tokenizers are fastest on many pieces of moderate size, and a corpus of many GB must never be held
in memory whole: rows are read from the memory-mapped Arrow data in batches and grouped into
documents of pieces of about CHUNK_CHARS characters, each cut after a line break where possible.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from textlstm.hardware.memory import page_out_array

CHUNK_CHARS = 1 << 16  # texts are encoded in pieces of about this size, cut after a line break


def split_pieces(dataset, documents: bool) -> Iterator[str]:
    """Every piece of a split's text, in order (documents not told apart): what a tokenizer learns from."""
    for document in documents_as_pieces(dataset_rows(dataset), documents):
        yield from document


def split_long_text(text: str, limit: int = CHUNK_CHARS) -> Iterator[str]:
    """Cut `text` into pieces of about `limit` characters, each ending after a line break when possible."""
    start = 0
    while len(text) - start > limit:
        cut = text.rfind("\n", start + limit // 2, start + limit)
        cut = start + limit if cut < 0 else cut + 1
        while cut < len(text) and text[cut].isspace() and cut - start < 2 * limit:
            cut += 1  # keep whitespace runs whole: word and BPE tokenizers treat them as one piece
        yield text[start:cut]
        start = cut
    if start < len(text):
        yield text[start:]


def documents_as_pieces(rows: Iterable[str], documents: bool) -> Iterator[Iterator[str]]:
    """Group rows into documents, each an iterator of pieces to encode.

    documents=True: each row is one document. documents=False: the rows are consecutive parts of one
    running text (the lines of a .txt file), so they all form a single document. Pieces come lazily
    (read each document's pieces before the next document): a running text of many GB is never
    held in memory whole.
    """
    if documents:
        for row in rows:
            if row:
                yield split_long_text(row)
        return
    pieces = _running_text_pieces(rows)
    first = next(pieces, None)
    if first is not None:
        yield itertools.chain([first], pieces)


def _running_text_pieces(rows: Iterable[str]) -> Iterator[str]:
    buffer, size = [], 0
    for row in rows:
        if size >= CHUNK_CHARS and row[:1] and not row[:1].isspace():
            yield "".join(buffer)
            buffer, size = [], 0
        buffer.append(row)
        size += len(row)
        if size >= 4 * CHUNK_CHARS:  # one very long line
            yield from split_long_text("".join(buffer))
            buffer, size = [], 0
    if buffer and (last := "".join(buffer)):
        yield last


def dataset_rows(dataset, batch_rows: int = 1024) -> Iterator[str]:
    """The rows of a split's "text" column, read in batches; pages already read are handed back to the kernel."""
    if dataset._indices is not None:  # a selection: let datasets resolve it
        for batch in dataset.iter(batch_size=batch_rows):
            yield from batch["text"]
        return
    for chunk in dataset.data.column("text").chunks:
        for start in range(0, len(chunk), batch_rows):
            yield from chunk.slice(start, batch_rows).to_pylist()
        page_out_array(chunk)  # read once: keep the memory-mapped text from piling up in RSS


def first_chars(texts: Iterable[str], limit: int) -> Iterator[str]:
    """The texts up to `limit` characters in all, the last one cut at the limit; nothing past it is read."""
    left = limit
    if left <= 0:
        return
    for text in texts:
        yield text[:left]
        left -= len(text)
        if left <= 0:
            return
