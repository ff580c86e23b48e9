"""Training on a streamed corpus (`--streaming`): read as it goes, tokenized on the fly, never stored whole.

The corpus is a `datasets` IterableDataset (corpora/streamed.py). From its train split:
- validation, read once into a small array of ids (at most its first VALID_CHARS characters):
  - local files: the last tenth of their characters, the row that straddles the boundary cut, as a
    stored corpus holds out (corpora/splits.py); their characters are counted by reading them through
    once first. A streamed and a stored run on the same files validate on the same text.
  - a Hub stream, whose length is not known: its first rows, VALID_CHARS characters' worth (a tenth
    of the corpus when it is shorter than 10 x VALID_CHARS).
  - a corpus with its own validation split (or --valid-split): that split.
  The run reports which of these it held out.
- tokenizer: trained on the first TOKENIZER_SAMPLE_CHARS characters of the training rows.
- training: every other row, each process reading its share (`split_dataset_by_node`), tokenized
  only when a batch needs it. At the end of the stream it starts over.

No ids are cached and no Arrow files are written. `StreamingBatcher.state_dict` records the
IterableDataset's position and the ids read but not yet trained on, so a resumed run reads on
exactly where it stopped.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets.distributed import split_dataset_by_node
from datasets.exceptions import DatasetsError

from textlstm.config import DataConfig
from textlstm.data.corpora.loaded import DEFAULT_VALID_FRACTION, one_line
from textlstm.data.corpora.splits import OWN_VALID_SPLITS, row_holding, tail_boundary
from textlstm.data.corpora.streamed import StreamedSource, open_streamed
from textlstm.data.text_pieces import documents_as_pieces, first_chars, split_long_text
from textlstm.data.token_ids import TokenizedSplit, encode_rows
from textlstm.data.tokenizer import TextTokenizer, build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.tokens import EOT_ID

# Characters of text held out for validation: a little under the trainer's default --eval-tokens for a
# char tokenizer, so that each evaluation scores the whole of it and reports bits per character.
VALID_CHARS = 1_000_000
TOKENIZER_SAMPLE_CHARS = 10_000_000  # characters of text the tokenizer is trained on
RUNNING_TEXT_CHARS = 1 << 14  # lines of a running text are read and encoded in blocks of about this size
COUNT_BATCH_ROWS = 10_000  # rows per Arrow batch when local files are read through to count their characters


@dataclass
class TrainStream:
    """The training rows of a streamed corpus, this process's share, as ids."""

    source: StreamedSource
    split: str
    column: str
    tokenizer: TextTokenizer | None = None
    skip_rows: int = 0  # a head held out for validation: the rows before the training rows
    end: tuple[int, int] | None = None  # a tail held out: the row it starts in, and that row's characters trained on

    def whole_split(self):
        """A fresh stream of the split, validation rows included, from its start."""
        return self.source.open_splits()[self.split]

    def open(self, rank: int = 0, world_size: int = 1):
        """A fresh stream of the training rows, from their start: process `rank`'s share of `world_size`."""
        dataset = self.whole_split()
        if self.skip_rows:
            dataset = dataset.skip(self.skip_rows)
        if self.end is not None:
            dataset = _rows_before(dataset, *self.end, self.column)
        # Rows counted from the split's start must not be counted in each file instead: with a part
        # held out, every process reads the rows in order and keeps every world_size-th one.
        strategy = "examples" if self.skip_rows or self.end is not None else "auto"
        return split_dataset_by_node(dataset, rank=rank, world_size=world_size, strategy=strategy)


def _rows_before(dataset, row: int, kept: int, column: str):
    """The rows of `dataset` before `row`, and the first `kept` characters of that row."""
    if not kept:
        return dataset.take(row)

    def cut(example: dict, index: int) -> dict:
        return {column: example[column][:kept]} if index == row else {}

    return dataset.take(row + 1).map(cut, with_indices=True)


def prepare_streamed(data: DataConfig, tokenizer: TextTokenizer | None, report) -> tuple[TrainStream, TokenizedSplit]:
    """`data.prepare` for a streamed corpus: the training stream (with its tokenizer) and the validation ids."""
    # The stream is read all through training, and every read failure becomes one error line:
    # datasets' own log lines (a JSON parse error, say) would only repeat it. Quiet from here on.
    datasets.logging.set_verbosity(logging.CRITICAL)
    source = open_streamed(data.dataset, data.dataset_config)
    report(f"corpus: {source.source}")
    splits = source.open_splits()
    _require_split(splits, data.split, source)
    stream = TrainStream(source, data.split, _text_column(splits[data.split], data.text_column, source), tokenizer)
    valid_rows = _hold_out(data, splits, stream, report)
    if tokenizer is None:  # the same sample on every process, so the same tokenizer
        sample = first_chars(_texts(stream.open(), stream.column, source), TOKENIZER_SAMPLE_CHARS)
        pieces = itertools.chain.from_iterable(documents_as_pieces(sample, source.documents))
        stream.tokenizer = build_tokenizer(data.tokenizer, pieces, data.vocab_size)
        report(
            f"tokenizer: {data.tokenizer}, trained on the first {TOKENIZER_SAMPLE_CHARS:,} characters "
            "of the training rows at most"
        )
    valid = _encode_valid(valid_rows, source.documents, stream.tokenizer)
    if valid.info.scored_tokens < 1:
        raise TextlstmError(f"the validation text of {source.name} is empty")
    report(
        f"tokens: {valid.info.tokens:,} validation ({data.tokenizer} tokenizer, "
        f"{stream.tokenizer.vocab_size:,} tokens in the vocabulary); training text tokenized as it is read"
    )
    return stream, valid


def _hold_out(data: DataConfig, splits: dict, stream: TrainStream, report) -> Iterator[str]:
    """The validation text (see the module docstring); sets the rows `stream` trains on, and reports which part it
    is."""
    own = data.valid_split or next((name for name in OWN_VALID_SPLITS if name in splits and name != data.split), None)
    if own:
        _require_split(splits, own, stream.source)
        report(f"validation: the split '{own}', its first {VALID_CHARS:,} characters at most")
        return first_chars(_texts(splits[own], stream.column, stream.source), VALID_CHARS)
    if stream.source.local:
        return _hold_out_tail(stream, report)
    return _hold_out_head(splits[data.split], stream, report)


def _hold_out_tail(stream: TrainStream, report) -> Iterator[str]:
    """The last DEFAULT_VALID_FRACTION of the split's characters, cut as a stored corpus's are (splits.tail_boundary).

    Two reads of the files: one counts their characters, the next stops at the boundary and reads the validation
    text on."""
    source, column = stream.source, stream.column
    total = sum(int(_lengths(texts).sum()) for texts in _arrow_batches(stream.whole_split(), column, source))
    boundary = tail_boundary(total, DEFAULT_VALID_FRACTION, source.name)
    row, kept, tail = _split_at(_arrow_batches(stream.whole_split(), column, source), boundary)
    stream.end = (row, kept)
    held_out = total - boundary
    scored = f"; its first {VALID_CHARS:,} are scored" if held_out > VALID_CHARS else ""
    report(
        f"validation: the last {DEFAULT_VALID_FRACTION:.0%} of the characters ({held_out:,} of {total:,}), "
        f"the part a stored corpus holds out{scored}"
    )
    return first_chars(tail, VALID_CHARS)


def _split_at(batches: Iterator[pa.Array], position: int) -> tuple[int, int, Iterator[str]]:
    """The row holding character `position` (splits.row_holding), its characters before `position`, and the text
    from `position` on."""
    holding = {}  # the batch read last, and the index of its first row

    def lengths() -> Iterator[np.ndarray]:
        rows = 0
        for texts in batches:
            holding.update(texts=texts, first_row=rows)
            rows += len(texts)
            yield _lengths(texts)

    row, chars_before = row_holding(lengths(), position)
    kept = position - chars_before
    texts = holding["texts"].slice(row - holding["first_row"]).to_pylist()
    rest = (text for later in batches for text in later.to_pylist())  # row_holding stopped in the batch holding `row`
    return row, kept, itertools.chain([texts[0][kept:]], texts[1:], rest)


def _hold_out_head(dataset, stream: TrainStream, report) -> Iterator[str]:
    """A stream of unknown length holds out its first rows: VALID_CHARS characters' worth, or a tenth of a shorter
    one."""
    stream.skip_rows = _held_out_rows(_texts(dataset, stream.column, stream.source), stream.source.name)
    report(
        f"validation: the first {stream.skip_rows:,} rows of the stream (its length is not known, so its head "
        "is held out, not its tail as a stored corpus's is)"
    )
    return itertools.islice(_texts(stream.whole_split(), stream.column, stream.source), stream.skip_rows)


def _require_split(splits: dict, name: str, source: StreamedSource) -> None:
    if name not in splits:
        raise TextlstmError(f"the corpus '{source.name}' has no split '{name}' (it has: {', '.join(splits)})")


def _texts(dataset, column: str, source: StreamedSource) -> Iterator[str]:
    for row in _rows(dataset, source):
        yield row[column] or ""


def _text_column(dataset, wanted: str | None, source: StreamedSource) -> str:
    first = next(iter(_rows(dataset, source)), None)
    if first is None:
        raise TextlstmError(f"the corpus '{source.name}' is empty")
    if wanted is not None:
        if wanted not in first:
            raise TextlstmError(f"the corpus '{source.name}' has no column '{wanted}' (it has: {', '.join(first)})")
        return wanted
    if "text" in first:
        return "text"
    strings = [name for name, value in first.items() if isinstance(value, str)]
    if len(strings) != 1:
        raise TextlstmError(f"say which column holds the text with --text-column (columns: {', '.join(first)})")
    return strings[0]


def _rows(dataset, source: StreamedSource) -> Iterator[dict]:
    """The rows of `dataset`; a read error (bad JSON, say) becomes one error line."""
    try:
        yield from dataset
    except GeneratorExit:  # closed unfinished, maybe at interpreter exit when the names below are gone
        raise
    except (DatasetsError, ValueError, OSError, pa.ArrowException) as error:
        raise TextlstmError(f"could not read {source.source}: {one_line(error)}") from None


def _arrow_batches(dataset, column: str, source: StreamedSource) -> Iterator[pa.Array]:
    """The text column of `dataset` in Arrow batches, null rows as empty text: counting makes no Python strings."""
    try:
        for table in dataset.with_format("arrow").iter(batch_size=COUNT_BATCH_ROWS):
            yield table.column(column).combine_chunks().fill_null("")
    except GeneratorExit:
        raise
    except (DatasetsError, ValueError, OSError, KeyError, pa.ArrowException) as error:
        raise TextlstmError(f"could not read {source.source}: {one_line(error)}") from None


def _lengths(texts: pa.Array) -> np.ndarray:
    return pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)


def _held_out_rows(texts: Iterator[str], name: str) -> int:
    """How many rows at the start of the stream are validation: VALID_CHARS characters' worth, or a tenth of a
    shorter corpus."""
    probe = 10 * VALID_CHARS
    lengths, total = [], 0
    for text in texts:
        lengths.append(len(text))
        total += len(text)
        if total >= probe:
            break
    budget = VALID_CHARS if total >= probe else max(1, total // 10)
    rows = int(np.searchsorted(np.cumsum(lengths), budget)) + 1
    if total < probe and rows >= len(lengths):
        raise TextlstmError(f"the corpus '{name}' is too small to hold out validation rows from its stream")
    return rows


def _encode_valid(rows: Iterator[str], documents: bool, tokenizer: TextTokenizer) -> TokenizedSplit:
    buffer = BytesIO()
    info = encode_rows(rows, documents, tokenizer, buffer)
    return TokenizedSplit(np.frombuffer(buffer.getbuffer(), dtype=info.dtype), info)


# ----------------------------------------------------------------------------- the batcher


class StreamingBatcher:
    """Truncated-BPTT batches [batch_size, seq_len] from a stream of ids, filled as they are needed.

    Each of the batch_size rows is a stream of its own: when a row holds fewer than seq_len + 1 ids it
    takes the next document from the stream (`EOT doc`), or for a running text (.txt) the next block
    of about RUNNING_TEXT_CHARS characters. A row is contiguous text within a document or block, so
    the LSTM state carried from one batch to the next starts each row where it left off.
    """

    def __init__(self, stream: TrainStream, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        self.stream = stream
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.rank, self.world_size = rank, world_size  # this process's share of the stream
        self.documents = stream.source.documents
        self.rows = [np.empty(0, dtype=np.int32) for _ in range(batch_size)]
        self.passes = 0  # times the stream was read to its end
        self._dataset = stream.open(rank, world_size)
        self._texts = None

    def __len__(self) -> int:
        return sys.maxsize  # a stream has no length known in advance: train with --max-steps

    def batch(self, i: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The next inputs and targets, each [batch_size, seq_len] int64 (`i` is not needed: batches come in order)."""
        width = self.seq_len + 1
        for r in range(self.batch_size):
            while len(self.rows[r]) < width:
                self.rows[r] = np.concatenate([self.rows[r], self._next_block()])
        block = torch.from_numpy(np.stack([row[:width] for row in self.rows]).astype(np.int64))
        self.rows = [row[self.seq_len :] for row in self.rows]  # the last target is the next first input
        return block[:, :-1], block[:, 1:]

    def state_dict(self) -> dict:
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "dataset": self._dataset.state_dict(),
            "passes": self.passes,
            "rows": [torch.from_numpy(row.copy()) for row in self.rows],
        }

    def load_state_dict(self, state: dict) -> None:
        # The trainer saves process 0's position only; another process's share is elsewhere in the stream.
        if (state["rank"], state["world_size"]) != (self.rank, self.world_size):
            raise ValueError(
                f"the stream position saved is process {state['rank']}'s of {state['world_size']}; "
                f"this is process {self.rank} of {self.world_size}"
            )
        if len(state["rows"]) != self.batch_size:
            raise ValueError(f"the saved stream has {len(state['rows'])} rows, this run {self.batch_size}")
        self.rows = [row.numpy().astype(np.int32) for row in state["rows"]]
        self.passes = int(state["passes"])
        self._dataset = self.stream.open(self.rank, self.world_size)
        self._dataset.load_state_dict(state["dataset"])
        self._texts = None

    def _next_block(self) -> np.ndarray:
        texts = self._take_texts()
        if not texts:
            raise TextlstmError("the training stream holds no text (this process's share of it is empty)")
        if self.documents:
            pieces = list(split_long_text(texts[0]))
            return np.concatenate([[EOT_ID], *self.stream.tokenizer.encode_arrays(pieces)]).astype(np.int32)
        return np.concatenate(self.stream.tokenizer.encode_arrays(["".join(texts)])).astype(np.int32)

    def _take_texts(self) -> list[str]:
        """The next document, or the next lines of a running text up to RUNNING_TEXT_CHARS; starts a new pass at the
        end."""
        for _attempt in range(2):
            texts, size = [], 0
            for text in self._iterate():
                if not text:
                    continue
                texts.append(text)
                size += len(text)
                if self.documents or size >= RUNNING_TEXT_CHARS:
                    return texts
            if texts:
                return texts
            self.passes += 1  # the end of the stream: read it again from the start
            self._dataset = self.stream.open(self.rank, self.world_size)
            self._texts = None
        return []

    def _iterate(self) -> Iterator[str]:
        if self._texts is None:
            self._texts = _texts(self._dataset, self.stream.column, self.stream.source)
        return self._texts
