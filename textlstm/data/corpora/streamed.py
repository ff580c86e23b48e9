"""Corpora opened as streams (`--streaming`): local files or a Hub id read as a `datasets` IterableDataset.

Nothing is converted to Arrow files on disk: rows are read from the source as they are asked for.
The same paths and globs as an ordinary corpus are accepted; the built-in corpus, corpus cards and
folders written by `Dataset.save_to_disk` are not streamed (they are small, or memory-mapped already).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import datasets
from datasets.exceptions import DatasetsError

from textlstm.data.corpora.cards import find_card
from textlstm.data.corpora.files import _builder_for, _folder_data_files, _is_saved_dataset, _refuse_empty_files
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, one_line, safe_name
from textlstm.errors import TextlstmError

@dataclass
class StreamedSource:
    name: str  # short, filesystem-safe
    source: str  # where the text comes from, for people
    documents: bool  # True: rows are documents; False: rows are lines of one running text
    open_splits: Callable[[], dict[str, datasets.IterableDataset]]  # a fresh stream of each split, from its start
    turns: None = None  # corpus cards (which declare turns) are not streamed


def open_streamed(dataset: str | None, config: str | None = None) -> StreamedSource:
    """The source `dataset` names, ready to be read as streams (nothing is read yet)."""
    if dataset is None:
        raise TextlstmError(
            "--streaming reads a corpus given with --dataset (local files or a Hugging Face Hub id); "
            "the built-in corpus is small: train on it without --streaming"
        )
    from textlstm.data.corpora import GLOB_CHARACTERS, _looks_like_path  # the same rules as an ordinary corpus

    path = Path(dataset).expanduser()
    if path.exists():
        if _is_saved_dataset(path):
            raise TextlstmError(f"{path} is a saved dataset, memory-mapped already: train on it without --streaming")
        files = _folder_data_files(path) if path.is_dir() else {DEFAULT_SPLIT: [str(path)]}
        name = safe_name(path.stem if path.is_file() else path.resolve().name)
        return _local(name, files, str(path.resolve()))
    if any(character in dataset for character in GLOB_CHARACTERS):
        matches = sorted(f for f in glob.glob(os.path.expanduser(dataset), recursive=True) if os.path.isfile(f))
        if not matches:
            raise TextlstmError(f"no files match {dataset}")
        return _local(safe_name(Path(matches[0]).parent.name), {DEFAULT_SPLIT: matches}, os.path.abspath(dataset))
    if _looks_like_path(dataset):
        raise TextlstmError(f"no such file or folder: {dataset}")
    if find_card(dataset):
        raise TextlstmError(f"'{dataset}' is a corpus card; cards are not streamed: pass its file or Hub id to --dataset")
    return _hub(dataset, config)


def _local(name: str, data_files: dict[str, list[str]], source: str) -> StreamedSource:
    builder = _builder_for([file for files in data_files.values() for file in files])
    _refuse_empty_files(name, data_files)
    settings = {"keep_linebreaks": True} if builder == "text" else {}

    def open_splits():
        return _load(builder, f"could not read {source}", data_files=data_files, **settings)

    # .txt rows are lines of one running text; rows of structured files are documents.
    return StreamedSource(name, f"{source} (streamed)", documents=builder != "text", open_splits=open_splits)


def _hub(repo_id: str, config: str | None) -> StreamedSource:
    def open_splits():
        return _load(repo_id, f"could not stream '{repo_id}' from the Hugging Face Hub", name=config)

    open_splits()  # fail here, before any training is set up, when the id is wrong or the Hub unreachable
    source = f"Hugging Face Hub: {repo_id}" + (f" ({config})" if config else "") + " (streamed)"
    return StreamedSource(safe_name(repo_id.replace("/", "_")), source, documents=True, open_splits=open_splits)


def _load(path: str, failure: str, **settings) -> dict[str, datasets.IterableDataset]:
    try:
        return dict(datasets.load_dataset(path, streaming=True, **settings))
    except (OSError, ValueError, DatasetsError) as error:
        raise TextlstmError(f"{failure}: {one_line(error)}") from None
