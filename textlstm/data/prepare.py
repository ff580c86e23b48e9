"""`prepare`, the one way from a DataConfig to a tokenizer and token ids: training, resuming and
evaluation all go through it. A stored corpus's ids come from token_ids.py (cached on disk); a
streamed corpus (data.streaming) gives its validation ids and a stream of its training text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from textlstm.config import AUTO, DataConfig
from textlstm.data.corpora import Corpus, load_corpus
from textlstm.data.corpora.splits import character_count
from textlstm.data.streaming import TrainStream, prepare_streamed
from textlstm.data.text_pieces import split_pieces
from textlstm.data.text_profile import TextProfile, profile_text
from textlstm.data.token_ids import TokenizedSplit, tokenize_splits
from textlstm.data.tokenizer import TextTokenizer, tokenizer_for_corpus
from textlstm.errors import TextlstmError


class TokenizerChoice(Protocol):
    kind: str  # char, word or bpe
    vocab_size: int | None  # the size it was measured with (used unless the run gives --vocab-size)
    reason: str  # shown as "tokenizer: KIND (auto: REASON)"


# Picks the kind for --tokenizer auto from the training text's profile (None: streamed, not known).
ChooseTokenizer = Callable[[TextProfile | None], TokenizerChoice]


@dataclass
class Prepared:
    corpus: Corpus  # a corpora.streamed.StreamedSource when streamed
    tokenizer: TextTokenizer
    splits: dict[str, TokenizedSplit]  # "train" and/or "valid"; only "valid" when streamed
    stream: TrainStream | None = None  # the training text when streamed (data.streaming)
    tokenizer_kind: str = ""  # char, word or bpe: data.tokenizer, or what "auto" resolved to
    vocab_size: int | None = None  # data.vocab_size, or the size "auto" chose with the kind


def prepare(
    data: DataConfig,
    tokenizer: TextTokenizer | None = None,
    report: Callable[[str], None] = lambda text: None,
    splits: tuple[str, ...] = ("train", "valid"),
    choose_tokenizer: ChooseTokenizer | None = None,
) -> Prepared:
    """The corpus `data` names, a tokenizer and the token ids of `splits`, each from the cache when it is there.

    tokenizer: use this one (a checkpoint's, to resume or evaluate it) instead of the one trained
    on the corpus's train split. report: called with a line about the corpus and one about the ids.
    A split asked for that holds no token to score is an error.
    data.streaming: the corpus is read as a stream instead (see textlstm/data/streaming.py): no ids are
    stored, the validation ids are held in memory and the training text comes as `stream`.
    data.tokenizer "auto" (with no `tokenizer` given): `choose_tokenizer` picks the kind from the
    training text's profile (data.text_profile; the trainer's rule, training.auto_settings); it is
    returned as `tokenizer_kind`.
    """
    if data.streaming:
        if tokenizer is None:
            data = _with_tokenizer_chosen(data, lambda: None, choose_tokenizer, report)
        stream, valid = prepare_streamed(data, tokenizer, report)
        return Prepared(
            stream.source,
            stream.tokenizer,
            {"valid": valid},
            stream=stream,
            tokenizer_kind=data.tokenizer,
            vocab_size=data.vocab_size,
        )
    corpus = load_corpus(
        data.dataset,
        config=data.dataset_config,
        split=data.split,
        valid_split=data.valid_split,
        text_column=data.text_column,
    )
    report(f"corpus: {corpus.source}")
    if tokenizer is None:

        def profile():
            return profile_text(character_count(corpus.train), split_pieces(corpus.train, corpus.documents))

        data = _with_tokenizer_chosen(data, profile, choose_tokenizer, report)
        tokenizer = tokenizer_for_corpus(corpus, data.tokenizer, data.vocab_size)
    tokenized = tokenize_splits(corpus, tokenizer, names=splits)
    if "train" in tokenized and tokenized["train"].info.scored_tokens < 2:
        raise TextlstmError(f"the training split of {corpus.name} has no text to learn from")
    if "valid" in tokenized and tokenized["valid"].info.scored_tokens < 1:
        which = f" ('{data.valid_split}')" if data.valid_split else ""
        raise TextlstmError(f"the validation split{which} of {corpus.name} is empty")
    counts = ", ".join(f"{split.info.tokens:,} {_SPLIT_WORDS[name]}" for name, split in tokenized.items())
    report(f"tokens: {counts} ({data.tokenizer} tokenizer, {tokenizer.vocab_size:,} tokens in the vocabulary)")
    return Prepared(corpus, tokenizer, tokenized, tokenizer_kind=data.tokenizer, vocab_size=data.vocab_size)


def _with_tokenizer_chosen(
    data: DataConfig, profile: Callable[[], TextProfile | None], choose_tokenizer: ChooseTokenizer | None, report
) -> DataConfig:
    """`data` with a tokenizer "auto" replaced by the kind `choose_tokenizer` picks from the training
    text's `profile` (measured only then), and its vocabulary size unless one is given (said through `report`)."""
    if data.tokenizer != AUTO:
        return data
    if choose_tokenizer is None:
        raise TextlstmError(f"tokenizer '{AUTO}' is chosen by the trainer: name the kind (char, word or bpe)")
    choice = choose_tokenizer(profile())
    vocab_size = data.vocab_size if data.vocab_size is not None else choice.vocab_size
    size = f" of {vocab_size:,} tokens" if choice.kind != "char" and vocab_size else ""
    report(f"tokenizer: {choice.kind}{size} ({AUTO}: {choice.reason})")
    return dataclasses.replace(data, tokenizer=choice.kind, vocab_size=vocab_size)


_SPLIT_WORDS = {"train": "train", "valid": "validation"}
