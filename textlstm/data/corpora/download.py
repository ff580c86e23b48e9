"""Files that a corpus card names by URL: downloaded once into textlstm's cache, and checked against
the card's size and SHA-256 whenever they are used, so a truncated or altered file is never read."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlsplit

import huggingface_hub.constants
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from textlstm.data.cache import cache_root
from textlstm.data.corpora.loaded import one_line
from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write

DOWNLOADS = "downloads"  # $TEXTLSTM_CACHE/downloads/CARD/FILE
BLOCK_BYTES = 1 << 16
TIMEOUT_SECONDS = 30  # a connection that sends nothing for this long fails


@dataclass(frozen=True)
class Download:
    """The file corpus card `card` names: where it comes from and what it must be."""

    card: str
    url: str
    size: int  # in bytes
    sha256: str  # hex digest, lower case

    @property
    def path(self) -> Path:
        """Where it is kept: the cache's downloads/, a folder named after the card, the URL's file name."""
        return cache_root() / DOWNLOADS / self.card / url_file_name(self.url)


def url_file_name(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).name


def open_url(url: str) -> BinaryIO:
    """The one place a download opens a connection (the tests replace it to keep off the network)."""
    return urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)


def fetched(download: Download) -> Path:
    """The checked file in the cache, downloaded first if it is not there yet."""
    path = download.path
    if path.is_file():
        size, sha256 = _measure(path, download.size)
        if (size, sha256) != (download.size, download.sha256):
            raise TextlstmError(
                f"{path} is not the file corpus card '{download.card}' names ({_difference(download, size, sha256)}): "
                f"delete it, and run again to download it from {download.url}"
            )
        return path
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise TextlstmError(
            f"corpus card '{download.card}' needs a file that is not downloaded yet, and HF_HUB_OFFLINE is set: "
            f"download {download.url} and save it as {path}"
        )
    _download(download, path)
    return path


def _download(download: Download, path: Path) -> None:
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"downloading {download.url} ({download.size:,} bytes) to {path}", markup=False, highlight=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written under its name only once it has passed its check (the temporary file goes otherwise).
        atomic_write(path, lambda tmp: _receive(download, tmp, console))
    except (OSError, http.client.HTTPException) as error:
        # urlopen wraps a failed connection: "<urlopen error [Errno -2] Name or service not known>"
        reason = error.reason if type(error) is urllib.error.URLError else error
        raise TextlstmError(
            f"could not download {download.url} ({one_line(reason)}): download it some other way and save it as {path}"
        ) from None


def _receive(download: Download, tmp: Path, console: Console) -> None:
    digest, received = hashlib.sha256(), 0
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with open_url(download.url) as response, open(tmp, "wb") as out, bar:
        task = bar.add_task(url_file_name(download.url), total=download.size)
        # No more is read once it is longer than it should be.
        while received <= download.size and (block := response.read(BLOCK_BYTES)):
            received += len(block)
            digest.update(block)
            out.write(block)
            bar.update(task, completed=received)
    if (received, digest.hexdigest()) != (download.size, download.sha256):
        raise TextlstmError(
            f"the download of {download.url} is not the file corpus card '{download.card}' names "
            f"({_difference(download, received, digest.hexdigest())}); it was not kept"
        )


def _measure(path: Path, expected_size: int) -> tuple[int, str | None]:
    """(size, SHA-256); the digest only when the size is the expected one (a wrong size settles it)."""
    size = path.stat().st_size
    if size != expected_size:
        return size, None
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return size, digest.hexdigest()


def _difference(download: Download, size: int, sha256: str | None) -> str:
    if size != download.size:
        return f"{size:,} bytes, not {download.size:,}"
    return f"SHA-256 {sha256}, not {download.sha256}"
