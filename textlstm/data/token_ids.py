"""Token ids on disk: a split's ids encoded once, cached, and memory-mapped.

A split is stored as one flat array of ids: every document starts with the end-of-text token and
the split ends with one, `EOT doc1 EOT doc2 ... EOT`. So every token of the text (and each
document's end) has something before it to be predicted from. The files are memory-mapped: a corpus
larger than memory trains in bounded memory. The batchers that read them are in batchers.py.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from textlstm.data.cache import cache_key, cache_root, code_key
from textlstm.data.corpora import Corpus
from textlstm.data.text_pieces import dataset_rows, documents_as_pieces
from textlstm.data.tokenizer import TextTokenizer
from textlstm.fileio import atomic_write
from textlstm.tokens import EOT_ID

# Pieces per encode call (parallel inside tokenizers). Each piece's Encoding takes ~100 bytes per
# token until it is converted, so 64 pieces peaked at +560 MB; 16 keep 2 cores busy for ~100 MB.
ENCODE_BATCH = 16


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
            atomic_write(meta_path, lambda tmp, info=info: tmp.write_text(json.dumps(asdict(info))))
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


def encode_rows(
    rows: Iterable[str], documents: bool, tokenizer: TextTokenizer, out: BinaryIO, progress=None
) -> SplitInfo:
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
