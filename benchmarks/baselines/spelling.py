"""The spelling of a word the open-vocabulary word model does not know: a character n-gram model.

Interpolated Kneser-Ney (Chen and Goodman's formulation, one absolute discount per order estimated as
n1 / (n1 + 2 n2) from the counts of counts), over the characters of words, each word padded on the
left with order - 1 begin symbols and ended by an end-of-word symbol, so the probabilities of all
finite spellings sum to one. The highest order counts n-grams; the lower orders count the distinct
characters each n-gram follows (continuation counts); the lowest interpolates with a uniform choice
among the training characters, the end symbol and one symbol for a character training never saw.
Such a character pays that symbol's probability plus `unseen_char_nats` (which of them it is).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

ORDER = 7  # on the validation words of three held-out corpora, within 0.02 bits/char of order 8 (see README.md)


class SpellingModel:
    def __init__(self, words: Iterable[str], order: int = ORDER, unseen_char_nats: float = 0.0):
        if order < 1:
            raise ValueError(f"the order of a character n-gram model is at least 1, not {order}")
        words = list(words)
        self.order = order
        self.characters = {c for word in words for c in word}
        # n-grams are strings (far smaller than tuples); the begin, end and unseen symbols are three
        # characters no training word holds (a test word's unseen characters become the unseen symbol first)
        self.begin, self.end, self.unseen = _free_characters(self.characters, 3)
        self.uniform = 1 / (len(self.characters) + 2)  # the characters, the end and the unseen symbol
        self.unseen_char_nats = unseen_char_nats
        # levels[k - 1][context of k - 1 symbols] = (Counter of the next symbol, its total, its distinct symbols)
        grams = Counter(gram for word in words for gram in self._grams(word))
        counts_by_level = [grams]
        for _ in range(order - 1):  # each lower order: how many distinct symbols come before the shorter n-gram
            counts_by_level.insert(0, Counter(gram[1:] for gram in counts_by_level[0]))
        self.discounts = [_discount(counts) for counts in counts_by_level]
        self.levels = [_by_context(counts) for counts in counts_by_level]

    def _grams(self, word: str) -> Iterable[str]:
        padded = self.begin * (self.order - 1) + word + self.end
        return (padded[end - self.order : end] for end in range(self.order, len(padded) + 1))

    def probability(self, symbol: str, context: str) -> float:
        """p(symbol | the last order - 1 symbols of context), from the lowest order up."""
        p = self.uniform
        for length, (level, discount) in enumerate(zip(self.levels, self.discounts)):
            found = level.get(context[len(context) - length :] if length else "")
            if found is None:  # an unseen context: every longer one is unseen too
                break
            following, total, distinct = found
            p = (max(following.get(symbol, 0) - discount, 0) + discount * distinct * p) / total
        return p

    def nats(self, word: str) -> float:
        """-log p(word), its end included."""
        symbols = [c if c in self.characters else self.unseen for c in word] + [self.end]
        context = self.begin * (self.order - 1)
        total = 0.0
        for symbol in symbols:
            total -= math.log(self.probability(symbol, context))
            if symbol == self.unseen:
                total += self.unseen_char_nats
            context = (context + symbol)[1:] if self.order > 1 else ""
        return total


def _discount(counts: Counter) -> float:
    once = sum(1 for n in counts.values() if n == 1)
    twice = sum(1 for n in counts.values() if n == 2)
    return once / (once + 2 * twice) if once else 0.5


def _free_characters(taken: set[str], count: int) -> list[str]:
    """`count` characters of Unicode's private use area that are not in `taken`."""
    return [c for c in map(chr, range(0xE000, 0xF900)) if c not in taken][:count]


def _by_context(counts: Counter) -> dict[str, tuple[Counter, int, int]]:
    following: dict[str, Counter] = {}
    for gram, n in counts.items():
        following.setdefault(gram[:-1], Counter())[gram[-1]] = n
    return {context: (symbols, sum(symbols.values()), len(symbols)) for context, symbols in following.items()}
