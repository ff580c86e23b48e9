"""What every large corpus does to its documents: files decoded and their line ends made one kind,
number tables and repeated texts left out, the documents taken in a stable order, and the corpus
cut off at its training characters.

A document is a (name, text) pair; its name decides its split (benchmarks/corpora/first_seven.py's
split_of), so a document is never cut across splits.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from benchmarks.corpora.first_seven import split_of

MAX_TRAIN_CHARS = 30_000_000
MIN_TRAIN_CHARS = 5_000_000  # the size these corpora are meant for; a smaller build says so
NUMBER_TABLE_SHARE = 0.3
# Hexadecimal and decimal literals and \x escapes: what code-page maps, fonts and test vectors are made of.
_NUMBER_LITERAL = re.compile(r"0[xX][0-9a-fA-F]+|\\x[0-9a-fA-F]{2}|\b\d+\b")

Document = tuple[str, str]


def decoded(data: bytes) -> str | None:
    """A file's text with CRLF and CR line ends made LF; None for a file that is not UTF-8 or holds a NUL
    byte (binary data)."""
    if b"\0" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def is_number_table(text: str, share: float = NUMBER_TABLE_SHARE) -> bool:
    """Whether more than `share` of the text's characters are number literals (a data table, not prose or code)."""
    if not text:
        return False
    in_numbers = sum(len(match) for match in _NUMBER_LITERAL.findall(text))
    return in_numbers > share * len(text)


def unique(documents: Iterable[Document]) -> list[Document]:
    """The documents without those whose text equals an earlier one's: the same page under two names
    (a link, a manual page that includes another) would otherwise sit in two splits."""
    seen, kept = set(), []
    for name, text in documents:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        if digest not in seen:
            seen.add(digest)
            kept.append((name, text))
    return kept


def hash_order(names: Iterable[str]) -> list[str]:
    """The names in the order of a stable hash: a cut-off then takes a sample from the whole source rather
    than its first folders. Salted, so that the order is unrelated to the split, which hashes the bare name."""
    return sorted(names, key=lambda name: hashlib.sha256(f"order:{name}".encode()).digest())


def capped_by_training(documents: Iterable[Document], max_train_chars: int = MAX_TRAIN_CHARS) -> list[Document]:
    """The documents in the order given, up to the first training document that would take the training
    split past `max_train_chars`; validation and test documents before it are kept."""
    kept, train_chars = [], 0
    for name, text in documents:
        if split_of(name) == "train":
            if train_chars + len(text) > max_train_chars:
                break
            train_chars += len(text)
        kept.append((name, text))
    return kept


def word_types(texts: Iterable[str]) -> int:
    """Distinct whitespace-separated words: the vocabulary a word model would have to cover."""
    return len({word for text in texts for word in text.split()})
