"""Words as PyTorch's word_language_model example reads them, and the word baselines' two vocabularies.

The example reads a text file line by line and makes each line `line.split() + ['<eos>']`. A split of
a held-out corpus is a list of documents; it is read here as the text file that holds each document
followed by a newline. So every newline inside a document and every document's end is one `<eos>`,
and the characters textlstm scores (each document plus one end symbol: benchmarks.heldout.protocol.scored_chars)
are the words, one `<eos>` per newline or document end, and the whitespace between words, which a
word model is given for free (runs of spaces, tabs and indentation cost it nothing).

Two vocabularies:

- closed: the example's dictionary, every token of train, then validation, then test, numbered in
  the order of first appearance. No test word is unknown (the optimistic bound).
- open: the training tokens seen at least MIN_COUNT times (and `<eos>`), plus an unknown id that no
  word maps to. Training words seen once become the unknown id in the training stream, so the model
  learns how often a word it has no entry for comes next: the singletons' share of the training text
  is the usual (Good-Turing) estimate of the share of words not seen before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

EOS = "<eos>"
MIN_COUNT = 2
UNKNOWN_ID = 0  # the open vocabulary's <unk>: no word maps to it, so a literal "<unk>" in a text is a word


def tokens_of(documents: Iterable[str]) -> list[str]:
    """The example's tokens of the documents: each line's whitespace-separated words, then <eos>."""
    return [token for text in documents for line in text.split("\n") for token in (*line.split(), EOS)]


@dataclass(frozen=True)
class Vocabulary:
    """Word -> id; `unknown_id` is None in a closed vocabulary (every word of the corpus has its own id)."""

    index: dict[str, int]
    unknown_id: int | None

    @property
    def size(self) -> int:
        return len(self.index) + (self.unknown_id is not None)

    def encode(self, tokens: Iterable[str]) -> tuple[list[int], list[str]]:
        """The ids of the tokens, and the tokens that became the unknown id, in order."""
        ids, unknown = [], []
        for token in tokens:
            word_id = self.index.get(token)
            if word_id is None:
                if self.unknown_id is None:
                    raise ValueError(f"{token!r} is not in the closed vocabulary")
                word_id = self.unknown_id
                unknown.append(token)
            ids.append(word_id)
        return ids, unknown


def closed_vocabulary(*splits: list[str]) -> Vocabulary:
    """The example's dictionary over the token lists of all splits, in the order given (train, valid, test)."""
    index: dict[str, int] = {}
    for tokens in splits:
        for token in tokens:
            index.setdefault(token, len(index))
    return Vocabulary(index, unknown_id=None)


def open_vocabulary(train_tokens: list[str], min_count: int = MIN_COUNT) -> Vocabulary:
    """The training tokens seen at least `min_count` times and <eos>, numbered from 1 in order of first
    appearance; 0 is the unknown id."""
    counts = Counter(train_tokens)
    index: dict[str, int] = {EOS: UNKNOWN_ID + 1}
    for token in train_tokens:
        if counts[token] >= min_count:
            index.setdefault(token, len(index) + 1)
    return Vocabulary(index, unknown_id=UNKNOWN_ID)
