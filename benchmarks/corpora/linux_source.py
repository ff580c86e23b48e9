"""Two corpora from the Linux kernel's source (Debian's linux-source-6.1, GPL-2.0), read straight from
its tarball, one document per file:

    linux-docs  technical documentation: Documentation/**/*.rst and *.txt (reStructuredText as the
                kernel's writers keep it), the translations/ folder (Chinese, Japanese, Korean,
                Italian, Spanish) left out; in path order
    linux-c     C source: the .c and .h files of the core folders (kernel, mm, fs, net, lib, block,
                ipc, init, security, crypto, io_uring, virt, include), number tables left out (code-page
                maps, fonts, cipher tables, test vectors); in the order of a stable hash of the path, so
                the cap at 30 million training characters takes a sample of every folder

drivers/, arch/, sound/ and tools/ are left out of linux-c: their generated register headers and
firmware tables would be much of it.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.corpora.documents import Document, decoded, hash_order, is_number_table

LINUX_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
NEEDS = "apt-get install linux-source-6.1"
DOCUMENTATION_SUFFIXES = (".rst", ".txt")
TRANSLATIONS = "Documentation/translations/"
CORE_FOLDERS = "kernel mm fs net lib block ipc init security crypto io_uring virt include".split()
C_SUFFIXES = (".c", ".h")


def tarball_texts(tarball: Path, wanted: Callable[[str], bool]) -> Iterator[Document]:
    """(path below the tarball's top folder, text) of its regular files whose path is `wanted`, in the
    tarball's order; files that are not UTF-8 text are passed over."""
    with tarfile.open(tarball, "r|*") as archive:  # one pass over the stream: no index of 75,000 members
        for member in archive:
            if not member.isfile() or "/" not in member.name:
                continue
            path = member.name.split("/", 1)[1]
            if wanted(path):
                text = decoded(archive.extractfile(member).read())
                if text is not None:
                    yield path, text


def is_documentation(path: str) -> bool:
    return (
        path.startswith("Documentation/")
        and path.endswith(DOCUMENTATION_SUFFIXES)
        and not path.startswith(TRANSLATIONS)
    )


def is_core_c(path: str) -> bool:
    return path.split("/", 1)[0] in CORE_FOLDERS and path.endswith(C_SUFFIXES)


def documentation_documents(tarball: Path = LINUX_SOURCE) -> list[Document] | None:
    if not tarball.is_file():
        return None
    return sorted((path, text) for path, text in tarball_texts(tarball, is_documentation) if text.strip())


def c_documents(tarball: Path = LINUX_SOURCE) -> list[Document] | None:
    if not tarball.is_file():
        return None
    texts = {path: text for path, text in tarball_texts(tarball, is_core_c) if text.strip()}
    return [(path, texts[path]) for path in hash_order(texts) if not is_number_table(texts[path])]
