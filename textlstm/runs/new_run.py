"""Run folders: the name of a new one, and the checks before anything is written into one."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from textlstm.config import RunConfig
from textlstm.errors import TextlstmError
from textlstm.runs import files


def new_run_folder(root: Path, config: RunConfig) -> Path:
    """A folder under `root` that does not exist yet: `YYYYmmdd-HHMMSS-CORPUS-TOKENIZER[-N]`."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{corpus_label(config)}-{config.data.tokenizer}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def corpus_label(config: RunConfig) -> str:
    """A short, filesystem-safe name for the corpus: a file's stem, or a hub id with '/' as '_'."""
    name = config.data.dataset or "pydoc"
    label = Path(name.rstrip("/")).stem if "/" not in name or Path(name).exists() else name.replace("/", "_")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:40] or "corpus"


def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse to mix a new run into a folder that holds other files; check it can be written.

    With `overwrite`, a folder that holds a textlstm run is accepted and left as it is: the trainer
    sets the old run aside (ReplacedRun) only once the new run's data, plan and model are ready.
    A folder that is not a textlstm run is refused, with or without `overwrite`.
    """
    if output.exists() and not output.is_dir():
        raise TextlstmError(f"output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if (output / SET_ASIDE).exists():
            raise TextlstmError(
                f"{output} holds {SET_ASIDE}, the files of a run that an interrupted --overwrite set aside: "
                "move them back into the folder or delete that folder, then run again"
            )
        if not holds_run(output):
            raise TextlstmError(
                f"output folder {output} holds files that are not a textlstm run (no readable {files.CONFIG}): "
                "--overwrite replaces only a textlstm run; give another --output"
            )
        if not overwrite:
            raise TextlstmError(
                f"output folder {output} already holds a textlstm run: use --resume {output} to continue it, "
                "--overwrite to replace it, or another --output"
            )
    check_writable(output)


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a textlstm run: a config.json that reads as a run's settings."""
    try:
        files.load_config(folder)
    except TextlstmError:
        return False
    return True


# Inside the run folder: the old run that --overwrite replaces, until the new run's first checkpoint.
SET_ASIDE = ".replaced-run"


class ReplacedRun:
    """The run that --overwrite replaces, moved whole into SET_ASIDE inside its own folder (so a run
    folder that is the working directory stays where it is). Deleted once the new run has saved its
    first checkpoint; put back if the new run fails before that."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.aside = folder / SET_ASIDE

    @classmethod
    def set_aside(cls, folder: Path) -> ReplacedRun | None:
        """Move everything in `folder` aside; None if it holds nothing."""
        entries = list(folder.iterdir()) if folder.is_dir() else []
        if not entries:
            return None
        replaced = cls(folder)
        replaced.aside.mkdir()
        for entry in entries:
            entry.rename(replaced.aside / entry.name)
        return replaced

    def discard(self) -> None:
        shutil.rmtree(self.aside)

    def put_back(self) -> None:
        """Delete what the new run wrote and move the old run's files back where they were."""
        for entry in self.folder.iterdir():
            if entry != self.aside:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for entry in self.aside.iterdir():
            entry.rename(self.folder / entry.name)
        self.aside.rmdir()


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and write a 4 KB probe file, so a full or read-only disk is
    reported before training, not at the first checkpoint."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_bytes(b"\0" * 4096)
        probe.unlink()
    except OSError as error:
        raise TextlstmError(f"cannot write checkpoints to {folder}: {error.strerror or error}") from None
