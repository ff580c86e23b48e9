"""Turn what the user passes as --dataset into train and validation datasets of text.

resolve.py says what `dataset` names (None, a path, a glob, a corpus card or a Hub id; the same
rules for a streamed corpus, corpora/streamed.py). This module loads it into Arrow datasets: each
kind of source has its own module (builtin.py, files.py, hub.py); splits.py then picks the text
column and the train/validation split, and fingerprint.py hashes the resulting text.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import datasets

from textlstm.data.corpora.builtin import load_builtin
from textlstm.data.corpora.cards import apply_card_settings
from textlstm.data.corpora.files import load_local
from textlstm.data.corpora.hub import load_hub
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, DEFAULT_VALID_FRACTION, Loaded, Options
from textlstm.data.corpora.resolve import BUILTIN, HUB, Source, resolve
from textlstm.data.corpora.splits import Corpus, make_corpus
from textlstm.hardware.memory import page_out_array

__all__ = ["Corpus", "load_corpus"]


def load_corpus(
    dataset: str | os.PathLike | None = None,
    *,
    config: str | None = None,
    split: str = DEFAULT_SPLIT,
    valid_split: str | None = None,
    text_column: str | None = None,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
) -> Corpus:
    """Load a corpus and split it into train and validation text (see the module docstring)."""
    options = Options(config, split or DEFAULT_SPLIT, valid_split, text_column, valid_fraction)
    with _quiet_datasets():
        source = resolve(None if dataset is None else os.fspath(dataset))
        apply_card_settings(source.card_settings, options)
        loaded = _load(source, options)
        # Building the Arrow files reads them all once; those pages need not stay in our RSS.
        for split in loaded.splits.values():
            for column in split.data.columns:
                for chunk in column.chunks:
                    page_out_array(chunk)
        return make_corpus(loaded, options)


def _load(source: Source, options: Options) -> Loaded:
    if source.kind == BUILTIN:
        loaded = load_builtin(source.where)
    elif source.kind == HUB:
        loaded = load_hub(source.where, options.config)
    else:
        loaded = load_local(source)
    # What the source says of itself (a card's name, documents flag and [chat] table) wins.
    loaded.name, loaded.documents, loaded.turns = source.name, source.documents, source.turns
    return loaded


@contextmanager
def _quiet_datasets():
    """Silence datasets' progress bars and log lines while loading.

    The CLI draws its own progress, and every failure becomes a TextlstmError.
    """
    verbosity = datasets.logging.get_verbosity()
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.logging.set_verbosity(logging.CRITICAL)
    if bars_were_on:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()
