"""Local files and folders: .txt, .json, .jsonl, .csv and .parquet files, globs of them, and folders
written by `Dataset.save_to_disk`; bytes that are not UTF-8 are replaced (text, csv) or refused (json)."""

from __future__ import annotations

import codecs
import glob
import os
import re
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.arrow_writer import SchemaInferenceError
from datasets.data_files import DataFilesList, get_data_patterns
from datasets.exceptions import DatasetGenerationError, DatasetsError
from pandas.errors import EmptyDataError

from textlstm.data.corpora.loaded import DEFAULT_SPLIT, Loaded, one_line, safe_name
from textlstm.errors import TextlstmError

BUILDER_FOR_SUFFIX = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# Builders that can decode with errors="replace"; the json builder hands raw bytes to Arrow instead.
BUILDERS_THAT_REPLACE_BAD_BYTES = ("text", "csv")


def load_path(path: Path) -> Loaded:
    name = safe_name(path.stem if path.is_file() else path.resolve().name)
    source = str(path.resolve())
    if _is_saved_dataset(path):
        return Loaded(name, _load_saved(path), documents=True, source=source)
    if path.is_dir():
        data_files = _folder_data_files(path)
    else:
        data_files = {DEFAULT_SPLIT: [str(path)]}
    return _load_files(name, data_files, source)


def load_glob(pattern: str) -> Loaded:
    files = sorted(file for file in glob.glob(os.path.expanduser(pattern), recursive=True) if os.path.isfile(file))
    if not files:
        raise TextlstmError(f"no files match {pattern}")
    prefix = re.split(r"[*?\[]", os.path.expanduser(pattern))[0]
    folder = Path(prefix) if not prefix or prefix.endswith(("/", os.sep)) else Path(prefix).parent
    name = safe_name(folder.resolve().name)
    return _load_files(name, {DEFAULT_SPLIT: files}, source=os.path.abspath(pattern))


def _is_saved_dataset(path: Path) -> bool:
    return (path / datasets.config.DATASET_STATE_JSON_FILENAME).is_file() or (
        path / datasets.config.DATASETDICT_JSON_FILENAME
    ).is_file()


def _load_saved(path: Path) -> dict[str, datasets.Dataset]:
    try:
        saved = datasets.load_from_disk(str(path))
    except (OSError, ValueError, DatasetsError) as error:
        raise TextlstmError(f"could not read the saved dataset {path}: {one_line(error)}") from None
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


def _load_files(name: str, data_files: dict[str, list[str]], source: str) -> Loaded:
    builder = _builder_for(_all_files(data_files))
    _refuse_empty_files(name, data_files)
    splits = _run_builder(builder, data_files, name)
    if builder == "json":
        _require_valid_utf8(splits, data_files)
    # .txt rows are lines of one running text; rows of structured files are documents.
    return Loaded(name, splits, documents=builder != "text", source=source)


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
        raise TextlstmError(f"could not read {_describe_files(data_files)}: {one_line(cause)}") from None


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
