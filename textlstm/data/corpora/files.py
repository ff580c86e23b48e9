"""Local files read into Arrow files: .txt, .json, .jsonl, .csv and .parquet files (which ones: resolve.py),
and folders written by `Dataset.save_to_disk`; bytes that are not UTF-8 are replaced (text, csv) or refused (json)."""

from __future__ import annotations

import codecs
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.arrow_writer import SchemaInferenceError
from datasets.exceptions import DatasetGenerationError, DatasetsError
from pandas.errors import EmptyDataError

from textlstm.data.corpora.loaded import DEFAULT_SPLIT, Loaded, one_line
from textlstm.data.corpora.resolve import SAVED, Source, source_of_path
from textlstm.errors import TextlstmError

# Builders that can decode with errors="replace"; the json builder hands raw bytes to Arrow instead.
BUILDERS_THAT_REPLACE_BAD_BYTES = ("text", "csv")


def load_path(path: Path) -> Loaded:
    """A file, a folder of files or a saved dataset, as loaded (resolve.source_of_path, then load_local)."""
    return load_local(source_of_path(path))


def load_local(source: Source) -> Loaded:
    """Local files (kind FILES) read into Arrow files, or a saved dataset (SAVED) memory-mapped."""
    if source.kind == SAVED:
        return Loaded(source.name, _load_saved(Path(source.where)), documents=True, source=source.where)
    splits = _run_builder(source.builder, source.files, source.name)
    if source.builder == "json":
        _require_valid_utf8(splits, source.files)
    return Loaded(source.name, splits, documents=source.documents, source=source.where)


def _load_saved(path: Path) -> dict[str, datasets.Dataset]:
    try:
        saved = datasets.load_from_disk(str(path))
    except (OSError, ValueError, DatasetsError) as error:
        raise TextlstmError(f"could not read the saved dataset {path}: {one_line(error)}") from None
    if isinstance(saved, datasets.Dataset):
        return {DEFAULT_SPLIT: saved}
    return dict(saved)


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
            warnings.warn(
                f"{bad_file} has bytes that are not valid UTF-8; they were replaced with U+FFFD", stacklevel=2
            )
            return _run_builder(builder, data_files, name, encoding_errors="replace")
        cause = error.__cause__ if isinstance(error, DatasetGenerationError) and error.__cause__ else error
        raise TextlstmError(f"could not read {_describe_files(data_files)}: {one_line(cause)}") from None


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
