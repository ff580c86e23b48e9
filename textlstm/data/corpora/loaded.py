"""What passes between the steps of loading a corpus: the caller's options, and a source as loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass

import datasets

from textlstm.turns import TurnFormat

DEFAULT_SPLIT = "train"
DEFAULT_VALID_FRACTION = 0.1


@dataclass
class Options:
    """What the caller asked for; a corpus card fills in what the caller left at its default."""

    config: str | None
    split: str
    valid_split: str | None
    text_column: str | None
    valid_fraction: float


@dataclass
class Loaded:
    """A source as loaded, before the text column and the splits are chosen."""

    name: str
    splits: dict[str, datasets.Dataset]
    documents: bool
    source: str
    turns: TurnFormat | None = None


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "corpus"


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
