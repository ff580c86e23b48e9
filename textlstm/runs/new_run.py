"""Run folders: the name of a new one, and the checks before anything is written into one."""

from __future__ import annotations

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

    With `overwrite`, the files of a previous run are removed (and nothing else).
    """
    if output.exists() and not output.is_dir():
        raise TextlstmError(f"output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            what = "a textlstm run" if (output / files.CONFIG).exists() else "files"
            raise TextlstmError(
                f"output folder {output} already holds {what}: use --resume {output} to continue it, "
                "--overwrite to replace it, or another --output"
            )
        for name in (files.CONFIG, files.TOKENIZER, files.BEST_WEIGHTS, files.TRAINER_STATE, files.METRICS, files.MODEL_CARD):
            (output / name).unlink(missing_ok=True)
    check_writable(output)


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
