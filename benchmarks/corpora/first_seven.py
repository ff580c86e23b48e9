"""Held-out evaluation corpora built from text every Linux machine with Python has.

    python -m benchmarks.corpora.first_seven [--out ~/.cache/textlstm/heldout]

Writes one folder per corpus under --out, each with train.jsonl, validation.jsonl and test.jsonl
(one {"text": ...} document per line: the `datasets` split naming that `textlstm train --dataset
FOLDER` reads), and manifest.json at the top (sizes and document names). Documents go to a split
by a stable hash of their name (about 90/5/5), so the same machine always gets the same split.

    stdlib-docstrings  English prose: the docstrings of the functions and classes (not the modules:
                       those are in textlstm's built-in corpus) of the standard library's .py files,
                       read with `ast` (nothing is imported); one document per module
    python-source      the standard library's .py files in sorted order, about 3 MB; one per file
    german             msgstr translations of /usr/share/locale/de/LC_MESSAGES/*.mo, read with
                       gettext.GNUTranslations; one document per catalog (skipped if missing)

The test and idlelib folders (and site-packages, lib2to3, turtledemo) are left out everywhere.
Four more (English prose, manual pages, verse, plays) come from benchmarks/corpora/debian_sources.py.
Each corpus is capped at MAX_CHARS characters, documents taken in the order their source gives.
"""

from __future__ import annotations

import argparse
import ast
import gettext
import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from benchmarks.corpora.debian_sources import MISSING, SOURCES

DEFAULT_OUT = Path("~/.cache/textlstm/heldout").expanduser()
SPLITS = ("train", "validation", "test")
SKIPPED_FOLDERS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
MAX_CHARS = 4_000_000
PYTHON_SOURCE_CHARS = 3_000_000
GERMAN_CATALOGS = Path("/usr/share/locale/de/LC_MESSAGES")
CORPORA = ("stdlib-docstrings", "python-source", "german", *SOURCES)


def split_of(name: str) -> str:
    """train, validation or test, from a stable hash of the document's name (90/5/5)."""
    bucket = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % 100
    return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


def stdlib_files(root: Path | None = None) -> list[tuple[str, Path]]:
    """(relative posix path, path) of the standard library's .py files, sorted, skipped folders left out."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_FOLDERS and not d.startswith("test")]
        found += [Path(folder) / name for name in files if name.endswith(".py")]
    return sorted(((path.relative_to(root).as_posix(), path) for path in found), key=lambda item: item[0])


def definition_docstrings(source: bytes) -> list[str]:
    """Docstrings of every function and class in the source, in source order (not the module's)."""
    tree = ast.parse(source)
    definitions = [
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    definitions.sort(key=lambda node: (node.lineno, node.col_offset))
    docstrings = (ast.get_docstring(node, clean=True) for node in definitions)
    return [text for text in docstrings if text]


def stdlib_docstring_documents() -> list[tuple[str, str]]:
    documents = []
    for name, path in stdlib_files():
        try:
            docstrings = definition_docstrings(path.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        if docstrings:
            documents.append((name, "\n\n".join(docstrings)))
    return documents


def python_source_documents() -> list[tuple[str, str]]:
    documents, total = [], 0
    for name, path in stdlib_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text.strip():
            continue
        if total + len(text) > PYTHON_SOURCE_CHARS:
            break
        documents.append((name, text))
        total += len(text)
    return documents


def catalog_messages(path: Path) -> list[str]:
    """The translated strings of one .mo catalog (plural forms included), in msgid order, header left out."""
    with open(path, "rb") as stream:
        catalog = gettext.GNUTranslations(stream)._catalog
    keys = sorted((key for key in catalog if key != ""), key=lambda key: key if isinstance(key, tuple) else (key, -1))
    return [catalog[key] for key in keys if catalog[key].strip()]


def german_documents(folder: Path = GERMAN_CATALOGS) -> list[tuple[str, str]] | None:
    if not folder.is_dir():
        return None
    documents = []
    for path in sorted(folder.glob("*.mo")):
        try:
            messages = catalog_messages(path)
        except (OSError, UnicodeDecodeError, ValueError) as error:  # a damaged or non-UTF-8 catalog
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        if messages:
            documents.append((path.name, "\n".join(messages)))
    return documents


def capped(documents: list[tuple[str, str]], max_chars: int = MAX_CHARS) -> list[tuple[str, str]]:
    kept, total = [], 0
    for name, text in documents:
        if total + len(text) > max_chars:
            break
        kept.append((name, text))
        total += len(text)
    return kept


def write_corpus(folder: Path, documents: list[tuple[str, str]]) -> dict:
    """train/validation/test.jsonl in `folder` (replaced whole); returns the sizes and names per split."""
    by_split = {split: [] for split in SPLITS}
    for name, text in documents:
        by_split[split_of(name)].append((name, text))
    empty = [split for split, docs in by_split.items() if not docs]
    if empty:
        raise SystemExit(f"error: {folder.name} has no documents in split {', '.join(empty)}")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for split, docs in by_split.items():
        with open(partial / f"{split}.jsonl", "w", encoding="utf-8") as out:
            for _, text in docs:
                out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return {
        split: {"documents": len(docs), "chars": sum(len(text) for _, text in docs), "names": [n for n, _ in docs]}
        for split, docs in by_split.items()
    }


def build(out: Path, corpora: tuple[str, ...] = CORPORA) -> dict:
    """Write the corpora under `out`, print their sizes, and return the manifest (also written there)."""
    sources = {
        "stdlib-docstrings": stdlib_docstring_documents,
        "python-source": python_source_documents,
        "german": german_documents,
        **SOURCES,
    }
    out.mkdir(parents=True, exist_ok=True)
    written = out / "manifest.json"
    manifest = json.loads(written.read_text()) if written.is_file() else {}  # the corpora not rebuilt stay listed
    for name in corpora:
        documents = sources[name]()
        if documents is None:
            needs = MISSING.get(name, f"{GERMAN_CATALOGS}")
            print(f"{name}: skipped, its source is missing (needs {needs})")
            continue
        sizes = write_corpus(out / name, capped(documents))
        manifest[name] = sizes
        counts = ", ".join(f"{split} {s['documents']} docs {s['chars']:,} chars" for split, s in sizes.items())
        print(f"{name}: {counts}")
    written.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default {DEFAULT_OUT})")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    args = parser.parse_args()
    build(args.out.expanduser(), tuple(args.corpora))


if __name__ == "__main__":
    main()
