"""Four more held-out corpora, from Debian packages and the project's shared corpora:

    handbook      English prose: The Debian Administrator's Handbook (package debian-handbook), the
                  text of its English HTML pages; one document per page (chapter or section)
    manpages      reference text: section 1 manual pages rendered by `man` at 80 columns, pages
                  taken in the order of a stable hash of their names up to the cap (the Google Cloud
                  SDK's generated gcloud pages left out); one per page
    verse         the songs-poems file of the fortunes package; one document per poem or song
    shakespeare   plays: tiny Shakespeare (../shared/corpora), cut into blocks of 40 speeches;
                  one document per block

Install the packages with `apt-get install debian-handbook fortunes man-db`; a corpus whose source
is missing is skipped with a line saying what to install. Each source returns (name, text) pairs or
None when its source is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

HANDBOOK = Path("/usr/share/doc/debian-handbook/html/en-US")
MANUAL_PAGES = Path("/usr/share/man/man1")
MANUAL_CHARS = 3_000_000
GENERATED_PAGES = ("gcloud",)
SONGS_AND_POEMS = Path("/usr/share/games/fortunes/songs-poems")
TINY_SHAKESPEARE = Path(__file__).resolve().parents[3] / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
SPEECHES_PER_DOCUMENT = 40
MISSING = {
    "handbook": "apt-get install debian-handbook",
    "manpages": "apt-get install man-db (and manual pages in /usr/share/man/man1)",
    "verse": "apt-get install fortunes",
    "shakespeare": f"the shared corpora beside the repository ({TINY_SHAKESPEARE})",
}


class _PageText(HTMLParser):
    """The readable text of one handbook page: scripts, styles and the navigation bars left out."""

    SKIPPED_TAGS = {"script", "style", "head"}
    SKIPPED_CLASSES = {"docnav", "navheader", "navfooter"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.open: list[bool] = []  # per open element: whether it (or one around it) is skipped

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        skipped = tag in self.SKIPPED_TAGS or bool(classes & self.SKIPPED_CLASSES) or attributes.get("id") == "title"
        if tag not in {"br", "img", "meta", "link", "hr", "input"}:  # elements without an end tag
            self.open.append(skipped or (bool(self.open) and self.open[-1]))

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        if not (self.open and self.open[-1]):
            self.parts.append(data)


def tidy(text: str) -> str:
    """Lines stripped of the HTML's indentation, runs of blank lines made one."""
    lines = [line.strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def handbook_documents(folder: Path = HANDBOOK) -> list[tuple[str, str]] | None:
    if not folder.is_dir():
        return None
    documents = []
    for path in sorted(folder.glob("*.html")):
        page = _PageText()
        page.feed(path.read_text(encoding="utf-8"))
        text = tidy("".join(page.parts))
        if len(text) > 200:  # the index and empty part pages are navigation only
            documents.append((path.name, text))
    return documents


def rendered_manual_page(page: Path) -> str:
    """A manual page file as `man` shows it at 80 columns, as plain text (no bold or underline overstrikes)."""
    environment = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    result = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "-l", str(page)],
        capture_output=True,
        env=environment,
        timeout=60,
    )
    plain = subprocess.run(["col", "-bx"], input=result.stdout, capture_output=True, timeout=60).stdout
    return plain.decode("utf-8", errors="replace").strip()


def manual_page_documents(folder: Path = MANUAL_PAGES, max_chars: int = MANUAL_CHARS) -> list[tuple[str, str]] | None:
    if (
        not folder.is_dir()
        or not any(folder.iterdir())
        or subprocess.run(["which", "man"], capture_output=True).returncode
    ):
        return None
    # The Google Cloud SDK's generated pages (about 10,000 here, nearly alike) would be most of the corpus.
    pages = [path for path in folder.iterdir() if not path.name.startswith(GENERATED_PAGES)]
    pages.sort(key=lambda path: hashlib.sha256(path.name.encode()).hexdigest())
    documents, total = [], 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for start in range(0, len(pages), 32):
            batch = pages[start : start + 32]
            for page, text in zip(batch, pool.map(rendered_manual_page, batch)):
                if len(text) < 200:
                    continue
                if total + len(text) > max_chars:
                    return documents
                documents.append((page.name, text))
                total += len(text)
    return documents


def verse_documents(path: Path = SONGS_AND_POEMS) -> list[tuple[str, str]] | None:
    if not path.is_file():
        return None
    pieces = [piece.strip("\n") for piece in path.read_text(encoding="utf-8", errors="replace").split("\n%\n")]
    return [(f"songs-poems-{index:04d}", piece) for index, piece in enumerate(pieces) if piece.strip()]


def shakespeare_documents(path: Path = TINY_SHAKESPEARE) -> list[tuple[str, str]] | None:
    if not path.is_file():
        return None
    speeches = path.read_text(encoding="utf-8").strip().split("\n\n")
    blocks = range(0, len(speeches), SPEECHES_PER_DOCUMENT)
    return [(f"speeches-{start:05d}", "\n\n".join(speeches[start : start + SPEECHES_PER_DOCUMENT])) for start in blocks]


SOURCES = {
    "handbook": handbook_documents,
    "manpages": manual_page_documents,
    "verse": verse_documents,
    "shakespeare": shakespeare_documents,
}
