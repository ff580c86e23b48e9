"""french-docs: technical documentation in French, from two Debian packages, one document per page:

    help/PATH       the LibreOffice help in French (libreoffice-help-fr, MPL-2.0): the text of each
                    page's content area, one line per paragraph, heading, list item or table cell
    man/PATH        the French manual pages under /usr/share/man/fr (manpages-fr's translations, GPL-3+,
                    and those other installed packages bring), rendered by `man` at 80 columns; a few
                    paragraphs their translators have not reached are in English

Pages under 200 characters (navigation, redirections) and repeated texts (a manual page that only
includes another) are left out. The corpus is skipped unless both sources are installed. The French
Debian handbook is not used: a third of its text is English, sections its translators have not reached.
"""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

from benchmarks.corpora.debian_sources import rendered_manual_page
from benchmarks.corpora.documents import Document, unique

LIBREOFFICE_HELP = Path("/usr/share/libreoffice/help/fr/text")
MANUAL_PAGES = Path("/usr/share/man/fr")
NEEDS = "apt-get install libreoffice-help-fr manpages-fr man-db"
MIN_PAGE_CHARS = 200


class _Open(NamedTuple):
    """An open element of a help page, and what it makes of the text inside it."""

    tag: str
    content: bool  # inside the page's content area
    skipped: bool  # a script or style, or a case of a switch that is not the default one
    code: bool  # inside a <pre>


class HelpPageText(HTMLParser):
    """The text inside a LibreOffice help page's <div id="DisplayArea">, the menus, index and debug footer
    around it left out: one line per paragraph, heading, list item or table cell, its spaces made single;
    a code sample (<pre>) keeps its lines and their indentation. Where the page switches on the system or
    the application (a hidden span for macOS, one for Calc, ...), the default case is kept."""

    BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "td", "th", "tr", "pre", "br", "table"}
    SKIPPED = {"script", "style"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.line: list[str] = []  # the pieces of the line being read
        self.open: list[_Open] = []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.end_line()
        if tag in self.VOID:
            return
        attributes = dict(attrs)
        outer = self.open[-1] if self.open else _Open("", False, False, False)
        other_case = "hidden" in attributes and not (attributes.get("id") or "").startswith("default")
        self.open.append(
            _Open(
                tag,
                content=outer.content or (tag == "div" and attributes.get("id") == "DisplayArea"),
                skipped=outer.skipped or tag in self.SKIPPED or other_case,
                code=outer.code or tag == "pre",
            )
        )

    def handle_endtag(self, tag):
        if tag in self.BLOCKS:
            self.end_line()
        opened = [index for index, element in enumerate(self.open) if element.tag == tag]
        if opened:  # elements left open inside it close with it
            del self.open[opened[-1] :]

    def handle_data(self, data):
        if not self.open or not self.open[-1].content or self.open[-1].skipped:
            return
        if self.open[-1].code:
            self.end_line()
            self.lines += [line.rstrip() for line in textwrap.dedent(data).split("\n") if line.strip()]
        else:
            self.line.append(data)

    def end_line(self):
        line = " ".join("".join(self.line).split())
        if line:
            self.lines.append(line)
        self.line = []

    def text(self) -> str:
        self.end_line()
        return "\n".join(self.lines)


def help_page_text(html: str) -> str:
    page = HelpPageText()
    page.feed(html)
    page.close()
    return page.text()


def help_documents(folder: Path = LIBREOFFICE_HELP) -> list[Document]:
    documents = []
    for path in sorted(folder.rglob("*.html")):
        text = help_page_text(path.read_text(encoding="utf-8"))
        if len(text) >= MIN_PAGE_CHARS:
            documents.append((f"help/{path.relative_to(folder).as_posix()}", text))
    return documents


def manual_page_documents(folder: Path = MANUAL_PAGES) -> list[Document]:
    pages = sorted(path for path in folder.glob("man*/*") if path.is_file() and not path.is_symlink())
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = list(pool.map(rendered_manual_page, pages))
    return [
        (f"man/{page.relative_to(folder).as_posix()}", text)
        for page, text in zip(pages, texts, strict=True)
        if len(text) >= MIN_PAGE_CHARS
    ]


def french_documents() -> list[Document] | None:
    if not (LIBREOFFICE_HELP.is_dir() and MANUAL_PAGES.is_dir()):
        return None
    return unique(help_documents() + manual_page_documents())
