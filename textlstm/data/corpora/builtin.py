"""The built-in corpus: Python's own documentation, read from the running interpreter's standard library."""

from __future__ import annotations

import ast
import inspect
import os
import platform
import sysconfig
import tokenize
from pathlib import Path

import datasets

from textlstm.data.corpora.cards import DEFAULT_CARD
from textlstm.data.corpora.loaded import DEFAULT_SPLIT, Loaded
from textlstm.errors import TextlstmError


def load_builtin(which: str) -> Loaded:
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
    return Loaded(
        name=DEFAULT_CARD,
        splits={DEFAULT_SPLIT: datasets.Dataset.from_dict({"text": texts})},
        documents=True,
        source=f"built-in: CPython {platform.python_version()} documentation, "
        f"pydoc topics and module docstrings ({kilobytes} KB)",
    )


SKIPPED_STDLIB_FOLDERS = {
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "__pycache__",
}
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
