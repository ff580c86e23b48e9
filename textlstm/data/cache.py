"""Where textlstm keeps what it can rebuild: trained tokenizers and token ids.

$TEXTLSTM_CACHE, or ~/.cache/textlstm. Entries are named by a digest of what they were built from,
so a changed corpus or tokenizer gets a new entry and a stale one is never read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV = "TEXTLSTM_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textlstm")


def cache_key(*parts: str) -> str:
    """A short file name for these parts (the same parts, the same name)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
