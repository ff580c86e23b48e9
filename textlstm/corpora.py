"""Turn what the user passes as --dataset into train and validation datasets of text.

`dataset` is resolved in this order:
  1. None: the default corpus card, `pydoc` (Python's own documentation, shipped with CPython).
  2. An existing path: a file, a folder, a glob of .txt/.json/.jsonl/.csv/.parquet files,
     or a folder written by `Dataset.save_to_disk`.
  3. The name of a corpus card, `corpora/NAME.toml`.
  4. A Hugging Face Hub dataset id.
"""

from __future__ import annotations

import ast
import codecs
import glob
import hashlib
import inspect
import logging
import os
import platform
import re
import sysconfig
import tokenize
import tomllib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets.arrow_writer import SchemaInferenceError
from datasets.data_files import DataFilesList, get_data_patterns
from datasets.exceptions import DatasetGenerationError, DatasetsError
from pandas.errors import EmptyDataError

from textlstm.errors import TextlstmError
from textlstm.pageout import page_out_array
from textlstm.turns import TurnFormat, turn_format

DEFAULT_CARD = "pydoc"
DEFAULT_SPLIT = "train"
DEFAULT_VALID_FRACTION = 0.1
OWN_VALID_SPLITS = ("validation", "valid", "dev")
BUILDER_FOR_SUFFIX = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# Builders that can decode with errors="replace"; the json builder hands raw bytes to Arrow instead.
BUILDERS_THAT_REPLACE_BAD_BYTES = ("text", "csv")
GLOB_CHARACTERS = "*?["
CARD_FOLDERS = (Path("corpora"), Path(__file__).resolve().parents[1] / "corpora")
CARD_SOURCES = ("builtin", "path", "hub")
CARD_SETTINGS = {
    "description": str,
    "config": str,
    "split": str,
    "valid_split": str,
    "text_column": str,
    "valid_fraction": float,
    "documents": bool,
    "chat": dict,  # user_prefix / bot_prefix: how the corpus writes a conversation (turns.py)
}


@dataclass
class Corpus:
    name: str  # short, filesystem-safe: used for run folders
    train: datasets.Dataset  # one column, "text"
    valid: datasets.Dataset  # one column, "text"
    documents: bool  # True: rows are separate documents; False: rows are pieces of one running text
    fingerprint: str  # same text and options -> same string; a cache key for tokenized ids
    source: str  # human-readable description of where the text came from
    turns: TurnFormat | None = None  # the card's [chat] table, if it has one


@dataclass
class _Options:
    config: str | None
    split: str
    valid_split: str | None
    text_column: str | None
    valid_fraction: float


@dataclass
class _Loaded:
    """A source as loaded, before the text column and the splits are chosen."""

    name: str
    splits: dict[str, datasets.Dataset]
    documents: bool
    source: str
    turns: TurnFormat | None = None


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
    options = _Options(config, split or DEFAULT_SPLIT, valid_split, text_column, valid_fraction)
    with _quiet_datasets():
        loaded = _load_source(None if dataset is None else os.fspath(dataset), options)
        # Building the Arrow files reads them all once; those pages need not stay in our RSS.
        for split in loaded.splits.values():
            for column in split.data.columns:
                for chunk in column.chunks:
                    page_out_array(chunk)
        return _make_corpus(loaded, options)


# ---------------------------------------------------------------- resolving what --dataset names


def _load_source(dataset: str | None, options: _Options) -> _Loaded:
    if dataset is None:
        card = _find_card(DEFAULT_CARD)
        # Without its card (e.g. installed from a wheel) the default is still the built-in corpus.
        return _load_card(card, options) if card else _load_builtin("pydoc_data")
    path = Path(dataset).expanduser()
    if path.exists():
        return _load_path(path)
    if any(character in dataset for character in GLOB_CHARACTERS):
        return _load_glob(dataset)
    if _looks_like_path(dataset):
        raise TextlstmError(f"no such file or folder: {dataset}")
    card = _find_card(dataset)
    if card:
        return _load_card(card, options)
    return _load_hub(dataset, options.config)


def _looks_like_path(dataset: str) -> bool:
    # "user/name" is a Hub id, so one "/" alone does not make a path.
    return (
        dataset.startswith((".", "/", "~"))
        or Path(dataset).suffix.lower() in BUILDER_FOR_SUFFIX
        or dataset.count("/") > 1
        or (os.sep != "/" and os.sep in dataset)
    )


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "corpus"


# ---------------------------------------------------------------- corpus cards


def _find_card(name: str) -> Path | None:
    if not re.fullmatch(r"[\w.-]+", name):
        return None
    for folder in CARD_FOLDERS:
        card = folder / f"{name}.toml"
        if card.is_file():
            return card
    return None


def _card_names() -> list[str]:
    return sorted({card.stem for folder in CARD_FOLDERS for card in folder.glob("*.toml")})


def _read_card(card: Path) -> dict:
    try:
        settings = tomllib.loads(card.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TextlstmError(f"corpus card {card} is not valid TOML: {error}") from None
    unknown = sorted(set(settings) - set(CARD_SOURCES) - set(CARD_SETTINGS))
    if unknown:
        raise TextlstmError(f"corpus card {card} has unknown keys: {', '.join(unknown)}")
    sources = [key for key in CARD_SOURCES if key in settings]
    if len(sources) != 1:
        raise TextlstmError(f"corpus card {card} must have exactly one of: {', '.join(CARD_SOURCES)}")
    for key, expected in {**CARD_SETTINGS, sources[0]: str}.items():
        if key in settings and not _is_instance(settings[key], expected):
            raise TextlstmError(f"corpus card {card}: '{key}' must be a {expected.__name__}")
    return settings


def _is_instance(value, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected)


def _apply_card_settings(settings: dict, options: _Options) -> None:
    """Card settings fill in what the caller left at its default; the caller's own choices win."""
    for key in ("config", "valid_split", "text_column"):
        if getattr(options, key) is None and key in settings:
            setattr(options, key, settings[key])
    if options.split == DEFAULT_SPLIT and "split" in settings:
        options.split = settings["split"]
    if options.valid_fraction == DEFAULT_VALID_FRACTION and "valid_fraction" in settings:
        options.valid_fraction = float(settings["valid_fraction"])


def _load_card(card: Path, options: _Options) -> _Loaded:
    settings = _read_card(card)
    _apply_card_settings(settings, options)
    if "builtin" in settings:
        loaded = _load_builtin(settings["builtin"])
    elif "hub" in settings:
        loaded = _load_hub(settings["hub"], options.config)
    else:
        path = card.parent / Path(settings["path"]).expanduser()
        if not path.exists():
            about = f": {settings['description']}" if "description" in settings else ""
            raise TextlstmError(f"no such file or folder: {path} (corpus card '{card.stem}'{about})")
        loaded = _load_path(path)
    loaded.name = _safe_name(card.stem)
    loaded.documents = settings.get("documents", loaded.documents)
    if "chat" in settings:
        loaded.turns = turn_format(settings["chat"], f"the [chat] table of corpus card {card}")
    return loaded


# ---------------------------------------------------------------- the built-in corpus


def _load_builtin(which: str) -> _Loaded:
    """Python's own documentation, read from the running interpreter's standard library.

    The pydoc_data topics (the text behind help("topic")) and the module docstrings of the standard
    library's pure-Python modules: about 650 KB of English prose on CPython 3.11, one document each.
    """
    if which != "pydoc_data":
        raise TextlstmError(f"unknown built-in corpus '{which}' (the one built-in is 'pydoc_data')")
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise TextlstmError("this Python has no pydoc_data module; pass --dataset with a file or folder") from None
    texts = [topics[key] for key in sorted(topics)] + _stdlib_module_docstrings()
    kilobytes = sum(len(text.encode("utf-8")) for text in texts) // 1000
    return _Loaded(
        name=DEFAULT_CARD,
        splits={DEFAULT_SPLIT: datasets.Dataset.from_dict({"text": texts})},
        documents=True,
        source=f"built-in: CPython {platform.python_version()} documentation, pydoc topics and module docstrings ({kilobytes} KB)",
    )


SKIPPED_STDLIB_FOLDERS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
MIN_DOCSTRING_CHARS = 200  # shorter ones are one-line summaries, not prose


def _stdlib_module_docstrings() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_STDLIB_FOLDERS and not d.startswith("test")]
        paths += [Path(folder) / f for f in files if f.endswith(".py")]
    docstrings = []
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        text = _module_docstring(path)
        if text and len(text) >= MIN_DOCSTRING_CHARS:
            docstrings.append(text)
    return docstrings


def _module_docstring(path: Path) -> str | None:
    """The docstring of a module, read from its first tokens without parsing the whole file."""
    try:
        with open(path, encoding="utf-8") as source:
            for token in tokenize.generate_tokens(source.readline):
                if token.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
                    continue
                if token.type != tokenize.STRING:
                    return None
                value = ast.literal_eval(token.string)
                return inspect.cleandoc(value) if isinstance(value, str) else None
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, tokenize.TokenError):
        return None
    return None


# ---------------------------------------------------------------- local files and folders


def _load_path(path: Path) -> _Loaded:
    name = _safe_name(path.stem if path.is_file() else path.resolve().name)
    source = str(path.resolve())
    if _is_saved_dataset(path):
        return _Loaded(name, _load_saved(path), documents=True, source=source)
    if path.is_dir():
        data_files = _folder_data_files(path)
    else:
        data_files = {DEFAULT_SPLIT: [str(path)]}
    return _load_files(name, data_files, source)


def _load_glob(pattern: str) -> _Loaded:
    files = sorted(file for file in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(file))
    if not files:
        raise TextlstmError(f"no files match {pattern}")
    prefix = re.split(r"[*?\[]", os.path.expanduser(pattern))[0]
    folder = Path(prefix) if not prefix or prefix.endswith(("/", os.sep)) else Path(prefix).parent
    name = _safe_name(folder.resolve().name)
    return _load_files(name, {DEFAULT_SPLIT: files}, source=os.path.abspath(pattern))


def _is_saved_dataset(path: Path) -> bool:
    return (path / datasets.config.DATASET_STATE_JSON_FILENAME).is_file() or (
        path / datasets.config.DATASETDICT_JSON_FILENAME
    ).is_file()


def _load_saved(path: Path) -> dict[str, datasets.Dataset]:
    try:
        saved = datasets.load_from_disk(str(path))
    except (OSError, ValueError, DatasetsError) as error:
        raise TextlstmError(f"could not read the saved dataset {path}: {_one_line(error)}") from None
    if isinstance(saved, datasets.Dataset):
        return {DEFAULT_SPLIT: saved}
    return dict(saved)


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


def _load_files(name: str, data_files: dict[str, list[str]], source: str) -> _Loaded:
    builder = _builder_for(_all_files(data_files))
    _refuse_empty_files(name, data_files)
    splits = _run_builder(builder, data_files, name)
    if builder == "json":
        _require_valid_utf8(splits, data_files)
    # .txt rows are lines of one running text; rows of structured files are documents.
    return _Loaded(name, splits, documents=builder != "text", source=source)


def _run_builder(builder: str, data_files: dict[str, list[str]], name: str, **extra) -> dict[str, datasets.Dataset]:
    # Arrow batches of 100,000 lines, not 1,000: opening a memory-mapped Arrow stream reads every
    # batch header, and with small batches that faults in every page of a GB-sized file.
    text_settings = {"keep_linebreaks": True, "writer_batch_size": 100_000}
    settings = {**text_settings, **extra} if builder == "text" else extra
    try:
        return dict(datasets.load_dataset(builder, data_files=data_files, **settings))
    except (DatasetsError, ValueError, OSError) as error:
        if _cause_of_type(error, SchemaInferenceError) or _cause_of_type(error, EmptyDataError):
            raise TextlstmError(f"the corpus '{name}' is empty") from None
        if _cause_of_type(error, UnicodeDecodeError) and builder in BUILDERS_THAT_REPLACE_BAD_BYTES and not extra:
            bad_file = _first_file_not_utf8(_all_files(data_files)) or _describe_files(data_files)
            warnings.warn(f"{bad_file} has bytes that are not valid UTF-8; they were replaced with U+FFFD")
            return _run_builder(builder, data_files, name, encoding_errors="replace")
        cause = error.__cause__ if isinstance(error, DatasetGenerationError) and error.__cause__ else error
        raise TextlstmError(f"could not read {_describe_files(data_files)}: {_one_line(cause)}") from None


def _refuse_empty_files(name: str, data_files: dict[str, list[str]]) -> None:
    # datasets fails on a split made only of empty files in a different way for each builder.
    for split, files in data_files.items():
        if all(os.path.getsize(file) == 0 for file in files):
            which = f" (its '{split}' files are empty)" if len(data_files) > 1 else ""
            raise TextlstmError(f"the corpus '{name}' is empty{which}")


def _require_valid_utf8(splits: dict[str, datasets.Dataset], data_files: dict[str, list[str]]) -> None:
    # The json builder passes raw bytes to Arrow, which stores invalid UTF-8 without complaint.
    try:
        for dataset in splits.values():
            dataset.data.table.validate(full=True)
    except pa.ArrowInvalid:
        bad_file = _first_file_not_utf8(_all_files(data_files)) or _describe_files(data_files)
        raise TextlstmError(f"{bad_file} is not valid UTF-8; re-encode it as UTF-8 (e.g. with iconv)") from None


def _first_file_not_utf8(files: list[str]) -> str | None:
    for file in files:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            with open(file, "rb") as stream:
                while block := stream.read(1 << 20):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return file
    return None


def _all_files(data_files: dict[str, list[str]]) -> list[str]:
    return [file for split_files in data_files.values() for file in split_files]


def _describe_files(data_files: dict[str, list[str]]) -> str:
    files = _all_files(data_files)
    return files[0] if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"


def _cause_of_type(error: BaseException, wanted: type) -> BaseException | None:
    while error is not None:
        if isinstance(error, wanted):
            return error
        error = error.__cause__ or error.__context__
    return None


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ---------------------------------------------------------------- the Hugging Face Hub


def _load_hub(repo_id: str, config: str | None) -> _Loaded:
    try:
        splits = datasets.load_dataset(repo_id, name=config)
    except (OSError, ValueError, DatasetsError) as error:
        reason = _one_line(error)
        if datasets.config.HF_HUB_OFFLINE and isinstance(error, ConnectionError):
            reason = "offline: HF_HUB_OFFLINE is set and it is not in the local datasets cache"
        if "/" in repo_id:
            hint = "; there is no local file or folder by that name either"
        else:
            hint = f"; nor is it a corpus card (cards: {', '.join(_card_names()) or 'none'})"
        raise TextlstmError(f"could not load '{repo_id}' from the Hugging Face Hub ({reason}){hint}") from None
    source = f"Hugging Face Hub: {repo_id}" + (f" ({config})" if config else "")
    if datasets.config.HF_HUB_OFFLINE:
        source += ", from the local cache (offline)"
    return _Loaded(_safe_name(repo_id.replace("/", "_")), dict(splits), documents=True, source=source)


# ---------------------------------------------------------------- choosing the text and the splits


def _make_corpus(loaded: _Loaded, options: _Options) -> Corpus:
    if not 0 < options.valid_fraction < 1:
        raise TextlstmError(f"valid_fraction must be between 0 and 1, not {options.valid_fraction}")
    train = _pick_split(loaded, options.split)
    column = _choose_text_column(train, options.text_column)
    train = _only_text(train, column, loaded.name, options.split)
    if _character_count(train) == 0:
        raise TextlstmError(f"the corpus '{loaded.name}' is empty (no text in split '{options.split}')")
    valid_name = options.valid_split or next(
        (name for name in OWN_VALID_SPLITS if name in loaded.splits and name != options.split), None
    )
    if valid_name:
        valid = _only_text(_pick_split(loaded, valid_name), column, loaded.name, valid_name)
        if _character_count(valid) == 0:
            raise TextlstmError(f"the validation split '{valid_name}' of the corpus '{loaded.name}' is empty")
    else:
        train, valid = _hold_out_tail(train, options.valid_fraction, loaded.name)
    return Corpus(
        name=loaded.name,
        train=train,
        valid=valid,
        documents=loaded.documents,
        fingerprint=_fingerprint(train, valid, loaded.documents),
        source=loaded.source,
        turns=loaded.turns,
    )


def _pick_split(loaded: _Loaded, split: str) -> datasets.Dataset:
    if split not in loaded.splits:
        available = ", ".join(sorted(loaded.splits))
        raise TextlstmError(f"the corpus '{loaded.name}' has no split '{split}' (available: {available})")
    return loaded.splits[split]


def _is_string_type(data_type: pa.DataType) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _choose_text_column(dataset: datasets.Dataset, text_column: str | None) -> str:
    """The named column, else "text", else the only string column."""
    if text_column is not None:
        return text_column
    if "text" in dataset.column_names:
        return "text"
    schema = dataset.data.schema
    string_columns = [field.name for field in schema if _is_string_type(field.type)]
    if len(string_columns) == 1:
        return string_columns[0]
    raise TextlstmError(
        f"cannot tell which column holds the text (columns: {_list_columns(dataset)}); pass text_column"
    )


def _list_columns(dataset: datasets.Dataset) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in dataset.data.schema) or "none"


def _only_text(dataset: datasets.Dataset, column: str, name: str, split: str) -> datasets.Dataset:
    """Just the text column, named "text", without null rows and without an indices mapping."""
    if column not in dataset.column_names:
        raise TextlstmError(
            f"the corpus '{name}' has no column '{column}' in split '{split}' (columns: {_list_columns(dataset)})"
        )
    data_type = dataset.data.schema.field(column).type
    if not _is_string_type(data_type):
        raise TextlstmError(f"column '{column}' of the corpus '{name}' holds {data_type}, not text")
    dataset = dataset.select_columns([column])
    if column != "text":
        dataset = dataset.rename_column(column, "text")
    # The Arrow-level code below reads dataset.data directly, which ignores an indices mapping.
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    if dataset.data.column("text").null_count:
        dataset = dataset.filter(lambda texts: [text is not None for text in texts], input_columns="text", batched=True)
        dataset = dataset.flatten_indices()
    return dataset


# Chunk by chunk: a 1 GB text file is 40 million rows, and arrays of all their lengths took 800 MB.
def _chunk_lengths(dataset: datasets.Dataset) -> Iterator[np.ndarray]:
    for chunk in dataset.data.column("text").chunks:
        lengths = pc.utf8_length(chunk).to_numpy(zero_copy_only=False).astype(np.int64)
        page_out_array(chunk)  # counting characters reads all the text
        yield lengths


def _character_count(dataset: datasets.Dataset) -> int:
    return sum(int(lengths.sum()) for lengths in _chunk_lengths(dataset))


def _row_holding(dataset: datasets.Dataset, position: int) -> tuple[int, int]:
    """The first row that ends after character `position`, and the characters of the rows before it."""
    rows_before = chars_before = 0
    for lengths in _chunk_lengths(dataset):
        ends = chars_before + np.cumsum(lengths)
        if len(ends) and ends[-1] > position:
            row = int(np.searchsorted(ends, position, side="right"))
            return rows_before + row, int(ends[row] - lengths[row])
        rows_before += len(lengths)
        chars_before = int(ends[-1]) if len(ends) else chars_before
    raise ValueError(f"character {position} is past the end of the text")


def _hold_out_tail(
    train: datasets.Dataset, valid_fraction: float, name: str
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Move the last `valid_fraction` of the characters to validation, cutting the row that straddles the boundary."""
    total = _character_count(train)
    boundary = int(total * (1 - valid_fraction))
    if boundary == 0 or boundary == total:
        raise TextlstmError(
            f"the corpus '{name}' is too small ({total} characters) to hold out {valid_fraction:g} of it for validation"
        )
    row, chars_before = _row_holding(train, boundary)
    cut = boundary - chars_before
    text = train[row]["text"]
    before = [train.select(range(row))] if row else []
    after = [train.select(range(row + 1, len(train)))] if row + 1 < len(train) else []
    head = _concatenate(before + [_text_rows(train, text[:cut])])
    tail = _concatenate([_text_rows(train, text[cut:])] + after)
    return head, tail


def _text_rows(like: datasets.Dataset, text: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"text": [text] if text else []}, features=like.features)


def _concatenate(parts: list[datasets.Dataset]) -> datasets.Dataset:
    return datasets.concatenate_datasets([part for part in parts if len(part)])


def _fingerprint(train: datasets.Dataset, valid: datasets.Dataset, documents: bool) -> str:
    """A hash of the text itself, so it is the same however the text was found and chunked."""
    digest = hashlib.sha256(b"textlstm corpus v1, documents=%d" % documents)
    for dataset in (train, valid):
        digest.update(_text_digest(dataset))
    return digest.hexdigest()[:16]


def _text_digest(dataset: datasets.Dataset) -> bytes:
    # Row lengths and text bytes go to separate hashes, so Arrow's chunk boundaries do not matter.
    lengths, text = hashlib.sha256(), hashlib.sha256()
    for chunk in dataset.data.column("text").chunks:
        if not len(chunk):
            continue
        offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths.update(np.diff(offsets).astype(np.int64).tobytes())
        if offsets[-1] > offsets[0]:  # a chunk of empty strings may have no data buffer at all
            text.update(chunk.buffers()[2][int(offsets[0]) : int(offsets[-1])])
        page_out_array(chunk)
    return lengths.digest() + text.digest()


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
