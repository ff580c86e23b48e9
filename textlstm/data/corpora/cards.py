"""Corpus cards: small TOML files that name a corpus and say where its text comes from. A card NAME is
corpora/NAME.toml in the working folder, else one shipped with textlstm (shipped_cards/, package data,
so a card name works from any folder however textlstm was installed)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from textlstm.data.corpora.download import Download, url_file_name
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, DEFAULT_VALID_FRACTION, Options
from textlstm.errors import TextlstmError

DEFAULT_CARD = "pydoc"
CARD_FOLDERS = (Path("corpora"), Path(__file__).resolve().parent / "shipped_cards")
CARD_SOURCES = ("builtin", "path", "hub", "url")
DOWNLOAD_CHECKS = {"size": int, "sha256": str}  # what the file at `url` must be: a card with `url` gives both
URL_SCHEMES = ("https", "http", "file")
KIND_NAMES = {str: "a string", float: "a number", int: "a whole number", bool: "true or false", dict: "a table"}
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


def find_card(name: str) -> Path | None:
    if not re.fullmatch(r"[\w.-]+", name):
        return None
    for folder in CARD_FOLDERS:
        card = folder / f"{name}.toml"
        if card.is_file():
            return card
    return None


def card_names() -> list[str]:
    return sorted({card.stem for folder in CARD_FOLDERS for card in folder.glob("*.toml")})


def read_card(card: Path) -> dict:
    try:
        settings = tomllib.loads(card.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TextlstmError(f"corpus card {card} is not valid TOML: {error}") from None
    unknown = sorted(set(settings) - set(CARD_SOURCES) - set(CARD_SETTINGS) - set(DOWNLOAD_CHECKS))
    if unknown:
        raise TextlstmError(f"corpus card {card} has unknown keys: {', '.join(unknown)}")
    sources = [key for key in CARD_SOURCES if key in settings]
    if len(sources) != 1:
        raise TextlstmError(f"corpus card {card} must have exactly one of: {', '.join(CARD_SOURCES)}")
    for key, expected in {**CARD_SETTINGS, **DOWNLOAD_CHECKS, sources[0]: str}.items():
        if key in settings and not _is_instance(settings[key], expected):
            raise TextlstmError(f"corpus card {card}: '{key}' must be {KIND_NAMES[expected]}")
    _check_download(card, settings)
    return settings


def _check_download(card: Path, settings: dict) -> None:
    checks = [key for key in DOWNLOAD_CHECKS if key in settings]
    if "url" not in settings:
        if checks:
            raise TextlstmError(f"corpus card {card}: '{checks[0]}' is the check of a download and goes with 'url'")
        return
    if len(checks) != len(DOWNLOAD_CHECKS):
        raise TextlstmError(f"corpus card {card}: a 'url' needs the file's 'size' (bytes) and 'sha256' beside it")
    url = settings["url"]
    if url.split(":", 1)[0].lower() not in URL_SCHEMES or not url_file_name(url):
        raise TextlstmError(f"corpus card {card}: 'url' must be an {', '.join(URL_SCHEMES)} URL of a file, not {url}")
    if settings["size"] <= 0:
        raise TextlstmError(f"corpus card {card}: 'size' must be the file's size in bytes, more than 0")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", settings["sha256"]):
        raise TextlstmError(f"corpus card {card}: 'sha256' must be the file's SHA-256, 64 hexadecimal digits")


def card_download(card: Path, settings: dict) -> Download:
    """The file a card with a `url` names (settings: as read_card returned them)."""
    return Download(card.stem, settings["url"], settings["size"], settings["sha256"].lower())


def _is_instance(value, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def apply_card_settings(settings: dict, options: Options) -> None:
    """Card settings fill in what the caller left at its default; the caller's own choices win."""
    for key in ("config", "valid_split", "text_column"):
        if getattr(options, key) is None and key in settings:
            setattr(options, key, settings[key])
    if options.split == DEFAULT_SPLIT and "split" in settings:
        options.split = settings["split"]
    if options.valid_fraction == DEFAULT_VALID_FRACTION and "valid_fraction" in settings:
        options.valid_fraction = float(settings["valid_fraction"])
