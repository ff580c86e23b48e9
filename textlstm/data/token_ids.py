"""Token ids on disk, and the batchers that read them.

A split is stored as one flat array of ids: every document starts with the end-of-text token and
the split ends with one, `EOT doc1 EOT doc2 ... EOT`. So every token of the text (and each
document's end) has something before it to be predicted from. The files are memory-mapped: a corpus
larger than memory trains in bounded memory.

`prepare` is the one way from a DataConfig to ids: training, resuming and evaluation all go through it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Iterator

import numpy as np
import torch

from textlstm.data.cache import cache_key, cache_root, code_key
from textlstm.config import AUTO, DataConfig, TrainConfig
from textlstm.data.corpora import Corpus, load_corpus
from textlstm.data.corpora.splits import character_count
from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write
from textlstm.data.text_pieces import dataset_rows, documents_as_pieces
from textlstm.data.tokenizer import TextTokenizer, tokenizer_for_corpus
from textlstm.tokens import EOT_ID, PAD_ID

if TYPE_CHECKING:
    from textlstm.data.streaming import TrainStream

# Pieces per encode call (parallel inside tokenizers). Each piece's Encoding takes ~100 bytes per
# token until it is converted, so 64 pieces peaked at +560 MB; 16 keep 2 cores busy for ~100 MB.
ENCODE_BATCH = 16


# ----------------------------------------------------------------------------- from settings to ids


@dataclass
class Prepared:
    corpus: Corpus  # a corpora.streamed.StreamedSource when streamed
    tokenizer: TextTokenizer
    splits: dict[str, TokenizedSplit]  # "train" and/or "valid"; only "valid" when streamed
    stream: "TrainStream | None" = None  # the training text when streamed (data.streaming)
    tokenizer_kind: str = ""  # char, word or bpe: data.tokenizer, or what "auto" resolved to


def prepare(
    data: DataConfig,
    tokenizer: TextTokenizer | None = None,
    report: Callable[[str], None] = lambda text: None,
    splits: tuple[str, ...] = ("train", "valid"),
    train: TrainConfig | None = None,
) -> Prepared:
    """The corpus `data` names, a tokenizer and the token ids of `splits`, each from the cache when it is there.

    tokenizer: use this one (a checkpoint's, to resume or evaluate it) instead of the one trained
    on the corpus's train split. report: called with a line about the corpus and one about the ids.
    A split asked for that holds no token to score is an error.
    data.streaming: the corpus is read as a stream instead (see textlstm/data/streaming.py): no ids are
    stored, the validation ids are held in memory and the training text comes as `stream`.
    data.tokenizer "auto" (with no `tokenizer` given): the kind is chosen from the training text's
    size and the budget of `train` (auto_settings.choose_tokenizer) and returned as `tokenizer_kind`.
    """
    if data.streaming:
        from textlstm.data.streaming import prepare_streamed

        if tokenizer is None:
            data = _with_tokenizer_chosen(data, None, train, report)
        return dataclasses.replace(prepare_streamed(data, tokenizer, report), tokenizer_kind=data.tokenizer)
    corpus = load_corpus(
        data.dataset, config=data.dataset_config, split=data.split, valid_split=data.valid_split, text_column=data.text_column
    )
    report(f"corpus: {corpus.source}")
    if tokenizer is None:
        data = _with_tokenizer_chosen(data, character_count(corpus.train), train, report)
        tokenizer = tokenizer_for_corpus(corpus, data.tokenizer, data.vocab_size)
    tokenized = tokenize_splits(corpus, tokenizer, names=splits)
    if "train" in tokenized and tokenized["train"].info.scored_tokens < 2:
        raise TextlstmError(f"the training split of {corpus.name} has no text to learn from")
    if "valid" in tokenized and tokenized["valid"].info.scored_tokens < 1:
        which = f" ('{data.valid_split}')" if data.valid_split else ""
        raise TextlstmError(f"the validation split{which} of {corpus.name} is empty")
    counts = ", ".join(f"{split.info.tokens:,} {_SPLIT_WORDS[name]}" for name, split in tokenized.items())
    report(f"tokens: {counts} ({data.tokenizer} tokenizer, {tokenizer.vocab_size:,} tokens in the vocabulary)")
    return Prepared(corpus, tokenizer, tokenized, tokenizer_kind=data.tokenizer)


def _with_tokenizer_chosen(data: DataConfig, train_characters: int | None, train: TrainConfig | None, report) -> DataConfig:
    """`data` with a tokenizer "auto" replaced by the chosen kind (said through `report`)."""
    if data.tokenizer != AUTO:
        return data
    from textlstm.training.auto_settings import budget_tokens, choose_tokenizer

    # A char tokenizer's tokens are about its characters: the budget of --epochs counts those.
    budget = budget_tokens(train, train_characters) if train is not None else None
    choice = choose_tokenizer(train_characters, budget)
    report(f"tokenizer: {choice.kind} ({AUTO}: {choice.reason})")
    return dataclasses.replace(data, tokenizer=choice.kind)


_SPLIT_WORDS = {"train": "train", "valid": "validation"}


# ----------------------------------------------------------------------------- ids on disk, cached


@dataclass
class SplitInfo:
    tokens: int  # ids in the file, the leading end-of-text included
    chars: int  # characters of text, each document end counted as one
    bytes: int  # UTF-8 bytes, likewise
    documents: int
    dtype: str

    @property
    def scored_tokens(self) -> int:
        return self.tokens - 1


@dataclass
class TokenizedSplit:
    ids: np.ndarray  # memory-mapped
    info: SplitInfo


def tokenize_splits(
    corpus: Corpus, tokenizer: TextTokenizer, progress=None, names: tuple[str, ...] = ("train", "valid")
) -> dict[str, TokenizedSplit]:
    """Ids of the corpus's splits `names` ("train", "valid"), from the cache or encoded now and cached."""
    folder = cache_root() / "ids" / cache_key(corpus.fingerprint, tokenizer.to_str(), code_key())
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name in names:
        meta_path = folder / f"{name}.json"
        if not meta_path.is_file():
            dataset = {"train": corpus.train, "valid": corpus.valid}[name]
            info = _encode_to_file(dataset, corpus.documents, tokenizer, folder / f"{name}.bin", progress)
            atomic_write(meta_path, lambda tmp: tmp.write_text(json.dumps(asdict(info))))
        splits[name] = open_split(folder / f"{name}.bin", SplitInfo(**json.loads(meta_path.read_text())))
    return splits


def open_split(path: Path, info: SplitInfo) -> TokenizedSplit:
    ids = np.memmap(path, dtype=info.dtype, mode="r", shape=(info.tokens,))
    return TokenizedSplit(ids, info)


def _encode_to_file(dataset, documents: bool, tokenizer: TextTokenizer, path: Path, progress=None) -> SplitInfo:
    info = []

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            info.append(encode_rows(dataset_rows(dataset), documents, tokenizer, out, progress))

    atomic_write(path, write)
    return info[0]


def encode_rows(rows: Iterable[str], documents: bool, tokenizer: TextTokenizer, out: BinaryIO, progress=None) -> SplitInfo:
    """Write the ids of `rows` to `out` as `EOT doc1 EOT doc2 ... EOT` (see the module docstring)."""
    dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.uint32
    counts = {"tokens": 1, "chars": 0, "bytes": 0, "documents": 0}
    eot = np.array([EOT_ID], dtype=dtype)
    out.write(eot.tobytes())
    for doc in documents_as_pieces(rows, documents):
        for batch in _batches(doc, ENCODE_BATCH):
            for ids in tokenizer.encode_arrays(batch):
                out.write(ids.astype(dtype).tobytes())
                counts["tokens"] += len(ids)
            counts["chars"] += sum(len(p) for p in batch)
            counts["bytes"] += sum(len(p.encode("utf-8", "surrogatepass")) for p in batch)
            if progress is not None:
                progress(sum(len(p) for p in batch))
        out.write(eot.tobytes())
        counts["tokens"] += 1
        counts["chars"] += 1
        counts["bytes"] += 1
        counts["documents"] += 1
    return SplitInfo(dtype=np.dtype(dtype).name, **counts)


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


# ----------------------------------------------------------------------------- batchers


class StreamBatcher:
    """Truncated-BPTT batches from one long stream of ids.

    The stream is cut into `world_size * batch_size` contiguous rows; batch i holds columns
    [i*seq_len, (i+1)*seq_len] of this process's rows, so the LSTM state after batch i is the right
    start for batch i+1. Batches are a pure function of (i, rank): a resumed run reads the same data.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rank: int = 0, world_size: int = 1):
        rows = batch_size * world_size
        self.row_len = (len(ids) - 1) // rows
        if self.row_len < 1:
            raise TextlstmError(
                f"the training split has {len(ids)} tokens: too few for {rows} rows; lower --batch-size"
            )
        self.ids = ids
        self.batch_size = batch_size
        self.seq_len = min(seq_len, self.row_len)
        self.first_row = rank * batch_size

    def __len__(self) -> int:
        return -(-self.row_len // self.seq_len)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each [batch_size, T] int64 (T is seq_len, or less for the last batch)."""
        start = i * self.seq_len
        width = min(self.seq_len, self.row_len - start)
        rows = [
            self.ids[row * self.row_len + start : row * self.row_len + start + width + 1]
            for row in range(self.first_row, self.first_row + self.batch_size)
        ]
        block = torch.from_numpy(np.stack(rows).astype(np.int64))
        return block[:, :-1], block[:, 1:]


class DocumentBatcher:
    """Padded batches of whole documents, for corpora of short, independent documents.

    Each document (`EOT doc EOT`) is cut into windows of at most seq_len + 1 ids; windows are
    shuffled each epoch with a generator seeded by (seed, epoch), padded with the padding id and
    given with their lengths, so the model masks the padding. The LSTM state starts at zero for
    every window.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, seed: int, rank: int = 0, world_size: int = 1):
        ends = np.flatnonzero(np.asarray(ids) == EOT_ID)
        starts, lengths = [], []
        for begin, end in zip(ends[:-1], ends[1:]):
            for window in range(begin, end, seq_len):
                starts.append(window)
                lengths.append(min(seq_len, end - window) + 1)
        if len(starts) < batch_size * world_size:
            raise TextlstmError(
                f"the training split has {len(starts)} document windows: too few for {batch_size * world_size} rows; lower --batch-size"
            )
        self.ids = ids
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self._order_epoch, self._order_cache = None, None

    def __len__(self) -> int:
        return len(self.starts) // (self.batch_size * self.world_size)

    def _order(self, epoch: int) -> np.ndarray:
        if self._order_epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order_cache = torch.randperm(len(self.starts), generator=generator).numpy()
            self._order_epoch = epoch
        return self._order_cache

    def batch(self, i: int, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, targets [batch, T] and lengths [batch] (lengths on the CPU)."""
        per_step = self.batch_size * self.world_size
        first = i * per_step + self.rank * self.batch_size
        chosen = self._order(epoch)[first : first + self.batch_size]
        width = int(self.lengths[chosen].max())
        block = np.full((len(chosen), width), PAD_ID, dtype=np.int64)
        for row, window in enumerate(chosen):
            piece = self.ids[self.starts[window] : self.starts[window] + self.lengths[window]]
            block[row, : len(piece)] = piece
        block = torch.from_numpy(block)
        return block[:, :-1], block[:, 1:], torch.from_numpy(self.lengths[chosen] - 1)
