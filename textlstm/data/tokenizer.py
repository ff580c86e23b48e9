"""Character, word and BPE tokenizers, built and saved with Hugging Face `tokenizers`.

Every tokenizer has the same two special tokens at the same ids: padding (0) and end of text (1),
so the model, the batchers and the sampler never need to know which kind they were given.

- char: one token per character seen in training; any other character falls back to its UTF-8
  bytes, so decode(encode(text)) == text for every string.
- word: words, punctuation runs and whitespace runs (a single leading space stays on the word);
  pieces not in the vocabulary become the unknown token.
- bpe: byte-level BPE, exact round trip for every string.

`tokenizer_for_corpus` trains one on a corpus's train split and caches it (see textlstm/data/cache.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from textlstm.data.cache import cache_key, cache_root, code_key
from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write
from textlstm.tokens import BYTE_TOKENS, EOT, EOT_ID, PAD, PAD_ID, UNK, byte_token

KINDS = ("char", "word", "bpe")
WORD_PATTERN = r" ?\w+| ?[^\w\s]+|\s+"
MAX_TABLE = 1 << 17  # char lookup: code points above the first two Unicode planes stay with `tokenizers`


class TextTokenizer:
    """A `tokenizers.Tokenizer` with the ids this project relies on."""

    def __init__(self, tokenizer: Tokenizer):
        self.hf = tokenizer
        # Text that happens to spell a special token ("<|endoftext|>") is text, not that token.
        self.hf.encode_special_tokens = True
        if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(EOT) != EOT_ID:
            raise TextlstmError(f"tokenizer has no {PAD} / {EOT} tokens at ids 0 / 1: not a textlstm tokenizer")
        self._char_lookup = _CharLookup.for_tokenizer(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @property
    def unk_id(self) -> int | None:
        return self.hf.token_to_id(UNK)

    @property
    def byte_fallback_start(self) -> int | None:
        """The id of <0x00> when <0x00>..<0xFF> have consecutive ids (a char tokenizer's byte fallback), else None."""
        first = self.hf.token_to_id(byte_token(0))
        if first is None or any(self.hf.token_to_id(byte_token(b)) != first + b for b in range(BYTE_TOKENS)):
            return None
        return first

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_arrays(self, texts: list[str]) -> list[np.ndarray]:
        """The ids of each text, as int64 arrays; char tokenizers encode by table lookup (fast path)."""
        looked_up = [self._char_lookup.encode(text) for text in texts] if self._char_lookup else [None] * len(texts)
        rest = [text for text, ids in zip(texts, looked_up) if ids is None]
        encoded = iter(self.hf.encode_batch(rest, add_special_tokens=False) if rest else [])
        return [ids if ids is not None else np.asarray(next(encoded).ids, dtype=np.int64) for ids in looked_up]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; padding is dropped, end of text and unknown tokens are shown by name."""
        ids = [i for i in ids if i != PAD_ID]
        return self.hf.decode(ids, skip_special_tokens=False)

    def to_str(self) -> str:
        return self.hf.to_str()

    def save(self, path: str | Path) -> None:
        self.hf.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)))
        except TextlstmError:
            raise
        except Exception as error:  # tokenizers raises a bare Exception on bad JSON
            raise TextlstmError(f"cannot read tokenizer {path}: {error}") from None


def tokenizer_for_corpus(corpus, kind: str, vocab_size: int | None) -> TextTokenizer:
    """The tokenizer of `kind` trained on the corpus's train split; trained once, then read from the cache."""
    path = cache_root() / "tokenizers" / f"{cache_key(corpus.fingerprint, kind, str(vocab_size), code_key())}.json"
    if path.is_file():
        return TextTokenizer.load(path)
    from textlstm.data.text_pieces import (
        split_pieces,
    )  # pyarrow: only training needs it, generate and chat start faster

    tokenizer = build_tokenizer(kind, split_pieces(corpus.train, corpus.documents), vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, tokenizer.save)
    return tokenizer


def build_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None) -> TextTokenizer:
    """Train a tokenizer of `kind` on `texts` (an iterable of strings, read once)."""
    if kind == "char":
        return TextTokenizer(_build_char(texts))
    if kind == "word":
        return TextTokenizer(_build_word(texts, vocab_size or 10_000))
    if kind == "bpe":
        return TextTokenizer(_build_bpe(texts, vocab_size or 4_096))
    raise TextlstmError(f"unknown tokenizer {kind!r}: choose one of {', '.join(KINDS)}")


def _build_char(texts: Iterable[str]) -> Tokenizer:
    vocab = {PAD: PAD_ID, EOT: EOT_ID}
    for byte in range(BYTE_TOKENS):
        vocab[byte_token(byte)] = len(vocab)
    for char in sorted(_characters_in(texts)):
        vocab.setdefault(char, len(vocab))
    # A BPE model without merges is a character model; byte_fallback covers unseen characters.
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], byte_fallback=True))
    tokenizer.add_special_tokens([PAD, EOT])
    tokenizer.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Fuse()])
    return tokenizer


def _characters_in(texts: Iterable[str]) -> set[str]:
    """The distinct characters of `texts`. ASCII pieces (str.isascii is a flag, no scan) are counted
    as bytes by numpy, 15x faster than a Counter over characters: it matters for GB-sized corpora."""
    ascii_seen = np.zeros(128, dtype=bool)
    others: set[str] = set()
    for text in texts:
        if text.isascii():
            ascii_seen |= np.bincount(np.frombuffer(text.encode("ascii"), dtype=np.uint8), minlength=128) > 0
        else:
            others.update(text)
    return others | {chr(code) for code in np.flatnonzero(ascii_seen)}


def _build_word(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), "isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOT, UNK], show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def _build_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


class _CharLookup:
    """Encoding with a char tokenizer by table lookup, for speed on large corpora.

    A char tokenizer is a BPE model without merges: each character in the vocabulary is its own token.
    `tokenizers` still runs its BPE machinery over each piece as one word (about 2 MB/s here); a numpy
    lookup from code points to ids gives the same ids a hundred times faster. A piece with a character
    outside the vocabulary (which `tokenizers` turns into byte tokens) is left to `tokenizers`.
    """

    def __init__(self, char_ids: dict[str, int]):
        self.table = np.full(min(MAX_TABLE, max(map(ord, char_ids)) + 1), -1, dtype=np.int64)
        for char, token_id in char_ids.items():
            if ord(char) < len(self.table):
                self.table[ord(char)] = token_id

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> _CharLookup | None:
        """A lookup for a char tokenizer (BPE, no merges, no normalizer or pre-tokenizer), else None."""
        spec = json.loads(tokenizer.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or model.get("merges") or spec.get("normalizer") or spec.get("pre_tokenizer"):
            return None
        char_ids = {token: token_id for token, token_id in model.get("vocab", {}).items() if len(token) == 1}
        return cls(char_ids) if char_ids else None

    def encode(self, text: str) -> np.ndarray | None:
        """The ids of `text`, or None when a character has no id of its own."""
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        if codes.size and int(codes.max()) >= len(self.table):
            return None
        ids = self.table[codes]
        if codes.size and int(ids.min()) < 0:
            return None
        return ids
