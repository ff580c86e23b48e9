"""`prepare`, the one way from a DataConfig to a tokenizer and token ids: training, resuming and
evaluation all go through it. A stored corpus's ids come from token_ids.py (cached on disk); a
streamed corpus (data.streaming) gives its validation ids and a stream of its training text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textlstm.config import AUTO, DataConfig
from textlstm.data.corpora import Corpus, load_corpus
from textlstm.data.streaming import TrainStream, prepare_streamed
from textlstm.data.token_ids import TokenizedSplit, tokenize_splits
from textlstm.data.tokenizer import TextTokenizer, tokenizer_for_corpus
from textlstm.errors import TextlstmError


@dataclass
class Prepared:
    corpus: Corpus  # a corpora.streamed.StreamedSource when streamed
    tokenizer: TextTokenizer
    splits: dict[str, TokenizedSplit]  # "train" and/or "valid"; only "valid" when streamed
    stream: TrainStream | None = None  # the training text when streamed (data.streaming)


def prepare(
    data: DataConfig,
    tokenizer: TextTokenizer | None = None,
    report: Callable[[str], None] = lambda text: None,
    splits: tuple[str, ...] = ("train", "valid"),
) -> Prepared:
    """The corpus `data` names, a tokenizer and the token ids of `splits`, each from the cache when it is there.

    tokenizer: use this one (a checkpoint's, to resume or evaluate it) instead of the one trained
    on the corpus's train split. report: called with a line about the corpus and one about the ids.
    A split asked for that holds no token to score is an error.
    data.streaming: the corpus is read as a stream instead (see textlstm/data/streaming.py): no ids are
    stored, the validation ids are held in memory and the training text comes as `stream`.
    data.tokenizer "auto" is the trainer's to resolve first (training/tokenizer_choice.py).
    """
    if tokenizer is None and data.tokenizer == AUTO:
        raise TextlstmError(f"tokenizer '{AUTO}' is chosen by the trainer: name the kind (char, word or bpe)")
    if data.streaming:
        stream, valid = prepare_streamed(data, tokenizer, report)
        return Prepared(
            stream.source,
            stream.tokenizer,
            {"valid": valid},
            stream=stream,
        )
    corpus = corpus_of(data)
    report(f"corpus: {corpus.source}")
    if tokenizer is None:
        tokenizer = tokenizer_for_corpus(corpus, data.tokenizer, data.vocab_size)
    tokenized = tokenize_splits(corpus, tokenizer, names=splits)
    if "train" in tokenized and tokenized["train"].info.scored_tokens < 2:
        raise TextlstmError(f"the training split of {corpus.name} has no text to learn from")
    if "valid" in tokenized and tokenized["valid"].info.scored_tokens < 1:
        which = f" ('{data.valid_split}')" if data.valid_split else ""
        raise TextlstmError(f"the validation split{which} of {corpus.name} is empty")
    counts = ", ".join(f"{split.info.tokens:,} {_SPLIT_WORDS[name]}" for name, split in tokenized.items())
    report(f"tokens: {counts} ({data.tokenizer} tokenizer, {tokenizer.vocab_size:,} tokens in the vocabulary)")
    return Prepared(corpus, tokenizer, tokenized)


def corpus_of(data: DataConfig) -> Corpus:
    """The stored corpus `data` names, split into train and validation text."""
    return load_corpus(
        data.dataset,
        config=data.dataset_config,
        split=data.split,
        valid_split=data.valid_split,
        text_column=data.text_column,
    )


_SPLIT_WORDS = {"train": "train", "valid": "validation"}
