"""Turn what the user passes as --dataset into train and validation datasets of text.

`dataset` is resolved in this order:
  1. None: the default corpus card, `pydoc` (Python's own documentation, shipped with CPython).
  2. An existing path: a file, a folder, a glob of .txt/.json/.jsonl/.csv/.parquet files,
     or a folder written by `Dataset.save_to_disk`.
  3. The name of a corpus card, `corpora/NAME.toml`.
  4. A Hugging Face Hub dataset id.

This module does that resolving. Each kind of source has its own module (cards.py for corpora/*.toml,
builtin.py, files.py, hub.py); splits.py then picks the text column and the train/validation split,
and fingerprint.py hashes the resulting text.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

import datasets

from textlstm.data.corpora.builtin import load_builtin
from textlstm.data.corpora.cards import DEFAULT_CARD, apply_card_settings, find_card, read_card
from textlstm.data.corpora.files import BUILDER_FOR_SUFFIX, load_glob, load_path
from textlstm.data.corpora.hub import load_hub
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, DEFAULT_VALID_FRACTION, Loaded, Options, safe_name
from textlstm.data.corpora.splits import Corpus, make_corpus
from textlstm.errors import TextlstmError
from textlstm.hardware.memory import page_out_array
from textlstm.turns import turn_format

__all__ = ["Corpus", "load_corpus"]

GLOB_CHARACTERS = "*?["


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
        loaded = _load_source(None if dataset is None else os.fspath(dataset), options)
        # Building the Arrow files reads them all once; those pages need not stay in our RSS.
        for split in loaded.splits.values():
            for column in split.data.columns:
                for chunk in column.chunks:
                    page_out_array(chunk)
        return make_corpus(loaded, options)


def _load_source(dataset: str | None, options: Options) -> Loaded:
    if dataset is None:
        card = find_card(DEFAULT_CARD)
        # Without its card (e.g. installed from a wheel) the default is still the built-in corpus.
        return _load_card(card, options) if card else load_builtin("pydoc_data")
    path = Path(dataset).expanduser()
    if path.exists():
        return load_path(path)
    if any(character in dataset for character in GLOB_CHARACTERS):
        return load_glob(dataset)
    if _looks_like_path(dataset):
        raise TextlstmError(f"no such file or folder: {dataset}")
    card = find_card(dataset)
    if card:
        return _load_card(card, options)
    return load_hub(dataset, options.config)


def _looks_like_path(dataset: str) -> bool:
    # "user/name" is a Hub id, so one "/" alone does not make a path.
    return (
        dataset.startswith((".", "/", "~"))
        or Path(dataset).suffix.lower() in BUILDER_FOR_SUFFIX
        or dataset.count("/") > 1
        or (os.sep != "/" and os.sep in dataset)
    )


def _load_card(card: Path, options: Options) -> Loaded:
    settings = read_card(card)
    apply_card_settings(settings, options)
    if "builtin" in settings:
        loaded = load_builtin(settings["builtin"])
    elif "hub" in settings:
        loaded = load_hub(settings["hub"], options.config)
    else:
        path = card.parent / Path(settings["path"]).expanduser()
        if not path.exists():
            about = f": {settings['description']}" if "description" in settings else ""
            raise TextlstmError(f"no such file or folder: {path} (corpus card '{card.stem}'{about})")
        loaded = load_path(path)
    loaded.name = safe_name(card.stem)
    loaded.documents = settings.get("documents", loaded.documents)
    if "chat" in settings:
        loaded.turns = turn_format(settings["chat"], f"the [chat] table of corpus card {card}")
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
