"""Where the speed benchmarks read their text and write their results, and what a --quick run uses instead."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
QUICK_CHARS = 60_000  # the text of a --quick run: the start of tiny Shakespeare


def add_quick_options(parser: argparse.ArgumentParser, quick: str, recorded: str) -> None:
    """--quick (what it shrinks, in `quick`) and --output-dir (by default the `recorded` files)."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{quick}, in seconds, to check that it runs; writes to --output-dir or a new temporary "
        "folder, never over the recorded results",
    )
    parser.add_argument("--output-dir", type=Path, help=f"write the results into this folder instead of {recorded}")


def output_folder(given: Path | None, quick: bool) -> Path | None:
    """The folder a run writes into: the one given, a new temporary one for a --quick run, or None for the
    recorded places."""
    if given is None and quick:
        given = Path(tempfile.mkdtemp(prefix="textlstm-quick-"))
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
    return given


def shakespeare_sample(folder: Path, chars: int = QUICK_CHARS) -> Path:
    """The first `chars` characters of tiny Shakespeare as a text file in `folder`: a --quick run's corpus."""
    path = folder / f"shakespeare-{chars}.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:chars], encoding="utf-8")
    return path
