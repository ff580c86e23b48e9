"""Where textlstm keeps what it can rebuild: trained tokenizers, token ids, and the files corpus cards
download (data/corpora/download.py, under downloads/).

$TEXTLSTM_CACHE, or ~/.cache/textlstm. Tokenizers and ids are named by a digest of what they were
built from, and of the code that built them (`code_key`), so a changed corpus, tokenizer, library or
textlstm gets a new entry and a stale one is never read.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

CACHE_ENV = "TEXTLSTM_CACHE"
PACKAGE = Path(__file__).resolve().parents[1]  # textlstm/
# textlstm's code that decides a tokenizer and the ids of a text: its special tokens, how a tokenizer
# is built, how text is cut into pieces and how pieces are encoded and written.
CODE_FILES = ("tokens.py", "data/tokenizer.py", "data/text_pieces.py", "data/token_ids.py")


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textlstm")


def cache_key(*parts: str) -> str:
    """A short file name for these parts (the same parts, the same name)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def code_key() -> str:
    """What besides its inputs decides a cached tokenizer or ids: the versions of `tokenizers` (which
    trains and encodes) and `datasets` (which reads the text), and textlstm's own code (code_digest)."""
    import datasets
    import tokenizers

    import textlstm

    versions = f"tokenizers {tokenizers.__version__}, datasets {datasets.__version__}, textlstm {textlstm.__version__}"
    return f"{versions}, code {code_digest()}"


@functools.cache
def code_digest() -> str:
    """A digest of the syntax trees of CODE_FILES: any change to that code, however small, gives new
    cache entries (a format number bumped by hand is forgotten); comments and layout do not count."""
    digest = hashlib.sha256()
    for name in CODE_FILES:
        try:
            digest.update(ast.dump(ast.parse((PACKAGE / name).read_text(encoding="utf-8"))).encode())
        except (OSError, SyntaxError, UnicodeDecodeError):  # no source (a frozen install): the version stands alone
            digest.update(f"{name} unreadable".encode())
    return digest.hexdigest()[:16]
