"""Where the speed benchmarks read their text and write their results."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1]
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
