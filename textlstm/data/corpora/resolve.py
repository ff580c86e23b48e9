"""What --dataset names: the one set of rules a stored corpus (corpora/__init__.py) and a streamed
one (corpora/streamed.py) both follow, before either reads any text.

`dataset` is resolved in this order:
  1. None: the default corpus card, `pydoc` (Python's own documentation, shipped with CPython).
  2. An existing path: a file, a folder, or a folder written by `Dataset.save_to_disk`.
  3. A glob of .txt/.json/.jsonl/.csv/.parquet files.
  4. The name of a corpus card: `corpora/NAME.toml` in the working folder, else one shipped with
     textlstm (cards.py). A card's download (`url`) is fetched into the
     cache here, once, and checked (download.py): what follows reads it as a local file.
  5. A Hugging Face Hub dataset id.

The answer is a `Source`: its kind, its files per split, the `datasets` builder that reads them, its
name, whether its rows are documents, and the card it came from. Each path then opens it its way.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from datasets.data_files import DataFilesList, get_data_patterns

from textlstm.data.corpora.cards import DEFAULT_CARD, card_download, find_card, read_card
from textlstm.data.corpora.download import fetched
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, safe_name
from textlstm.errors import TextlstmError
from textlstm.turns import TurnFormat, turn_format

BUILTIN, FILES, SAVED, HUB = "builtin", "files", "saved", "hub"
BUILDER_FOR_SUFFIX = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
GLOB_CHARACTERS = "*?["


@dataclass
class Source:
    """A corpus as --dataset names it, before any of its text is read."""

    kind: str  # BUILTIN, FILES, SAVED or HUB
    name: str  # short, filesystem-safe: used for run folders
    where: str  # FILES: the path or glob, absolute; SAVED: its folder; HUB: the dataset id; BUILTIN: which one
    documents: bool  # True: rows are separate documents; False: rows are lines of one running text (.txt)
    files: dict[str, list[str]] = field(default_factory=dict)  # FILES: the files of each split
    builder: str | None = None  # FILES: the `datasets` builder that reads them (text, json, csv, parquet)
    card: Path | None = None  # the corpus card it was named by
    card_settings: dict = field(default_factory=dict)  # that card's settings (cards.CARD_SETTINGS)
    turns: TurnFormat | None = None  # the card's [chat] table


def resolve(dataset: str | None, streaming: bool = False) -> Source:
    """The source `dataset` names (see the module docstring). streaming: refuse what is not streamed,
    the built-in corpus, corpus cards and saved datasets, before anything is read."""
    if dataset is None:
        if streaming:
            raise TextlstmError(
                "--streaming reads a corpus given with --dataset (local files or a Hugging Face Hub id); "
                "the built-in corpus is small: train on it without --streaming"
            )
        card = find_card(DEFAULT_CARD)
        # Without its card (an install that left package data out) the default is still the built-in corpus.
        return _from_card(card) if card else Source(BUILTIN, DEFAULT_CARD, "pydoc_data", documents=True)
    path = Path(dataset).expanduser()
    if path.exists():
        if streaming and is_saved_dataset(path):
            raise TextlstmError(f"{path} is a saved dataset, memory-mapped already: train on it without --streaming")
        return source_of_path(path)
    if any(character in dataset for character in GLOB_CHARACTERS):
        return _from_glob(dataset)
    if _looks_like_path(dataset):
        raise TextlstmError(f"no such file or folder: {dataset}")
    card = find_card(dataset)
    if card and streaming:
        raise TextlstmError(
            f"'{dataset}' is a corpus card; cards are not streamed: pass its file or Hub id to --dataset"
        )
    if card:
        return _from_card(card)
    return Source(HUB, safe_name(dataset.replace("/", "_")), dataset, documents=True)


def source_of_path(path: Path) -> Source:
    """A file, a folder of files, or a folder written by `Dataset.save_to_disk`."""
    name = safe_name(path.stem if path.is_file() else path.resolve().name)
    if is_saved_dataset(path):
        return Source(SAVED, name, str(path.resolve()), documents=True)
    files = _folder_data_files(path) if path.is_dir() else {DEFAULT_SPLIT: [str(path)]}
    return _from_files(name, files, str(path.resolve()))


def is_saved_dataset(path: Path) -> bool:
    return (path / datasets.config.DATASET_STATE_JSON_FILENAME).is_file() or (
        path / datasets.config.DATASETDICT_JSON_FILENAME
    ).is_file()


def _from_glob(pattern: str) -> Source:
    files = sorted(file for file in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(file))
    if not files:
        raise TextlstmError(f"no files match {pattern}")
    # Named after the folder the pattern starts in: "books/**/*.txt" is "books", wherever its files lie.
    prefix = re.split(r"[*?\[]", os.path.expanduser(pattern))[0]
    folder = Path(prefix) if not prefix or prefix.endswith(("/", os.sep)) else Path(prefix).parent
    return _from_files(safe_name(folder.resolve().name), {DEFAULT_SPLIT: files}, os.path.abspath(pattern))


def _from_files(name: str, files: dict[str, list[str]], where: str) -> Source:
    builder = _builder_for([file for split_files in files.values() for file in split_files])
    _refuse_empty_files(name, files)
    # .txt rows are lines of one running text; rows of structured files are documents.
    return Source(FILES, name, where, documents=builder != "text", files=files, builder=builder)


def _looks_like_path(dataset: str) -> bool:
    # "user/name" is a Hub id, so one "/" alone does not make a path.
    return (
        dataset.startswith((".", "/", "~"))
        or Path(dataset).suffix.lower() in BUILDER_FOR_SUFFIX
        or dataset.count("/") > 1
        or (os.sep != "/" and os.sep in dataset)
    )


def _from_card(card: Path) -> Source:
    settings = read_card(card)
    if "builtin" in settings:
        source = Source(BUILTIN, card.stem, settings["builtin"], documents=True)
    elif "hub" in settings:
        source = Source(HUB, card.stem, settings["hub"], documents=True)
    elif "url" in settings:
        source = source_of_path(fetched(card_download(card, settings)))
    else:
        path = card.parent / Path(settings["path"]).expanduser()
        if not path.exists():
            about = f": {settings['description']}" if "description" in settings else ""
            raise TextlstmError(f"no such file or folder: {path} (corpus card '{card.stem}'{about})")
        source = source_of_path(path)
    source.name = safe_name(card.stem)
    source.documents = settings.get("documents", source.documents)
    source.card, source.card_settings = card, settings
    if "chat" in settings:
        source.turns = turn_format(settings["chat"], f"the [chat] table of corpus card {card}")
    return source


def _folder_data_files(folder: Path) -> dict[str, list[str]]:
    """Files per split, named the way `datasets` infers splits (train.txt, validation.txt, ...)."""
    base = folder.resolve().as_posix()
    try:
        patterns = get_data_patterns(base)
    except FileNotFoundError:
        patterns = {}
    data_files = {}
    for split, split_patterns in patterns.items():
        files = [
            file
            for file in DataFilesList.from_patterns(split_patterns, base_path=base)
            if Path(file).suffix.lower() in BUILDER_FOR_SUFFIX
        ]
        if files:
            data_files[split] = files
    if not data_files:
        raise TextlstmError(f"no .txt, .json, .jsonl, .csv or .parquet files in {folder}")
    return data_files


def _builder_for(files: list[str]) -> str:
    suffixes = sorted({Path(file).suffix.lower() for file in files})
    unknown = [suffix or "(none)" for suffix in suffixes if suffix not in BUILDER_FOR_SUFFIX]
    if unknown:
        raise TextlstmError(
            f"unsupported file type {', '.join(unknown)}: use .txt, .json, .jsonl, .csv or .parquet files"
        )
    builders = {BUILDER_FOR_SUFFIX[suffix] for suffix in suffixes}
    if len(builders) > 1:
        raise TextlstmError(f"mixed file types ({', '.join(suffixes)}): use files of one type")
    return builders.pop()


def _refuse_empty_files(name: str, data_files: dict[str, list[str]]) -> None:
    # datasets fails on a split made only of empty files in a different way for each builder.
    for split, files in data_files.items():
        if all(os.path.getsize(file) == 0 for file in files):
            which = f" (its '{split}' files are empty)" if len(data_files) > 1 else ""
            raise TextlstmError(f"the corpus '{name}' is empty{which}")
