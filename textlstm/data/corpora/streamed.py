"""Corpora opened as streams (`--streaming`): local files or a Hub id read as a `datasets` IterableDataset.

Nothing is converted to Arrow files on disk: rows are read from the source as they are asked for.
What --dataset names is resolved as for an ordinary corpus (resolve.py), with the same errors; the
built-in corpus, corpus cards and folders written by `Dataset.save_to_disk` are not streamed (they
are small, or memory-mapped already).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import datasets
from datasets.exceptions import DatasetsError

from textlstm.data.corpora.hub import LOAD_ERRORS, NO_SCRIPTS, hub_description, hub_failure
from textlstm.data.corpora.loaded import one_line
from textlstm.data.corpora.resolve import HUB, Source, resolve
from textlstm.errors import TextlstmError


@dataclass
class StreamedSource:
    name: str  # short, filesystem-safe
    source: str  # where the text comes from, for people
    documents: bool  # True: rows are documents; False: rows are lines of one running text
    open_splits: Callable[[], dict[str, datasets.IterableDataset]]  # a fresh stream of each split, from its start
    local: bool  # local files: they can be read through once to count their characters (a Hub stream cannot)
    turns: None = None  # corpus cards (which declare turns) are not streamed


def open_streamed(dataset: str | None, config: str | None = None) -> StreamedSource:
    """The source `dataset` names, ready to be read as streams (nothing is read yet)."""
    source = resolve(dataset, streaming=True)
    return _hub(source, config) if source.kind == HUB else _local(source)


def _local(source: Source) -> StreamedSource:
    settings = {"keep_linebreaks": True} if source.builder == "text" else {}

    def open_splits():
        try:
            return dict(datasets.load_dataset(source.builder, data_files=source.files, streaming=True, **settings))
        except (OSError, ValueError, DatasetsError) as error:
            raise TextlstmError(f"could not read {source.where}: {one_line(error)}") from None

    return StreamedSource(source.name, f"{source.where} (streamed)", source.documents, open_splits, local=True)


def _hub(source: Source, config: str | None) -> StreamedSource:
    def open_splits():
        try:
            return dict(datasets.load_dataset(source.where, name=config, streaming=True, **NO_SCRIPTS))
        except LOAD_ERRORS as error:
            raise hub_failure(source.where, error) from None

    open_splits()  # fail here, before any training is set up, when the id is wrong or the Hub unreachable
    description = hub_description(source.where, config) + " (streamed)"
    return StreamedSource(source.name, description, source.documents, open_splits, local=False)
