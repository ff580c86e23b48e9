"""Command options from a TOML file (`textlstm train --config FILE.toml`).

Keys are option names, with dashes or underscores (`hidden-size = 512`, `hidden_size = 512`). They
may sit at the top level or in the tables [data], [model] and [train], which only group them.
A list becomes a comma-separated value (`adaptive-cutoffs = [2000, 10000]`). Values are checked
like the same options on the command line, and the command line overrides the file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from textlstm.errors import TextlstmError

TABLES = ("data", "model", "train")


def read_options(path: str | Path, known: set[str]) -> dict:
    """Option name (with underscores) -> value, for every key of the file; unknown keys are refused."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise TextlstmError(f"cannot read {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TextlstmError(f"{path} is not a valid TOML file: {error}") from None
    options: dict = {}
    for key, value in _flatten(raw, path):
        name = key.replace("-", "_")
        if name not in known:
            raise TextlstmError(f"{path}: unknown option {key!r}")
        if name in options:
            raise TextlstmError(f"{path}: option {key!r} is given twice")
        options[name] = ",".join(str(item) for item in value) if isinstance(value, list) else value
    return options


def _flatten(raw: dict, path: Path):
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in TABLES:
                raise TextlstmError(f"{path}: unknown table [{key}] (tables may be {', '.join(TABLES)}, or none)")
            for inner_key, inner_value in value.items():
                if isinstance(inner_value, dict):
                    raise TextlstmError(f"{path}: table [{key}.{inner_key}] is not an option")
                yield inner_key, inner_value
        else:
            yield key, value
