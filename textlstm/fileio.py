"""Writing files so that a crash never leaves a half-written file under the real name."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one under the real name.
    """
    path = Path(path)
    tmp = _new_temporary_file(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask, as the kernel applied it
    try:
        write(tmp)
        os.chmod(tmp, mode)  # a writer may have made the file anew: safetensors creates it 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _new_temporary_file(path: Path) -> Path:
    """An empty new file beside `path`, created with mode 0666 less the umask like any other file
    (tempfile.mkstemp's 0600 would survive the rename: files only their owner could read)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries, so a rename in it survives a power cut (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
