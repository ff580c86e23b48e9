"""go-source: the Go standard library and toolchain as Debian's golang-1.19-src installs them (BSD-3-Clause),
one document per .go file (tests included), in the order of a stable hash of the path.

Left out: testdata/ folders (fixtures, some of them deliberately broken Go), vendor/ folders (other
projects' code), files marked `// Code generated ... DO NOT EDIT.` (the Go convention for generated
code: syscall tables, the compiler's rewrite rules) and number tables.
"""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks.corpora.documents import Document, decoded, hash_order, is_number_table

GO_SOURCE = Path("/usr/share/go-1.19/src")
NEEDS = "apt-get install golang-1.19-src"
SKIPPED_FOLDERS = {"testdata", "vendor"}
# https://go.dev/s/generatedcode: a line of its own, anywhere before the package clause
_GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)


_PACKAGE_CLAUSE = re.compile(r"^package ", re.MULTILINE)


def is_generated(text: str) -> bool:
    clause = _PACKAGE_CLAUSE.search(text)
    return _GENERATED.search(text, 0, clause.start() if clause else len(text)) is not None


def go_files(root: Path) -> list[str]:
    """Paths below `root` (posix) of the .go files outside the skipped folders."""
    return [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.go")
        if path.is_file() and not SKIPPED_FOLDERS & set(path.relative_to(root).parts[:-1])
    ]


def go_documents(root: Path = GO_SOURCE) -> list[Document] | None:
    if not root.is_dir():
        return None
    documents = []
    for name in hash_order(go_files(root)):
        text = decoded((root / name).read_bytes())
        if text and text.strip() and not is_generated(text) and not is_number_table(text):
            documents.append((name, text))
    return documents
