"""Reading a long prompt from a file (generate --prompt-file, chat /load)."""

from __future__ import annotations

from pathlib import Path

from textlstm.errors import TextlstmError


def read_prompt_file(path: str | Path) -> str:
    """The text of a UTF-8 file; a file that cannot be read raises TextlstmError with one line."""
    path = Path(path).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise TextlstmError(f"cannot read {path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise TextlstmError(f"cannot read {path}: {error.strerror or error}") from None
