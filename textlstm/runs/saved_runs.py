"""What a run folder says about itself: its settings, its evaluations and how far it got.

Read-only: nothing here loads weights or writes a file, so looking at a run that is still training
is safe. `info`, `runs` and `plot` read runs through this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from textlstm.config import RunConfig
from textlstm.errors import TextlstmError
from textlstm.runs import files
from textlstm.runs.hub import is_hub_id, resolve_checkpoint

BUILT_IN_CORPUS = "built-in (Python documentation)"

if TYPE_CHECKING:
    from textlstm.model.summary import LayerRow


@dataclass
class Run:
    folder: Path
    config: RunConfig | None
    records: list[dict] = field(default_factory=list)  # metrics.jsonl, one per evaluation
    problem: str | None = None  # why the config could not be read

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def steps(self) -> int | None:
        """Steps trained, as of the last evaluation."""
        return self.records[-1]["step"] if self.records else None

    @property
    def best(self) -> dict | None:
        """The evaluation with the lowest validation loss (the one model.safetensors holds)."""
        scored = [r for r in self.records if _finite(r.get("valid_loss"))]
        return min(scored, key=lambda r: r["valid_loss"]) if scored else None

    @property
    def corpus(self) -> str:
        if self.config is None:
            return "-"
        return self.config.data.dataset or BUILT_IN_CORPUS

    @property
    def tokenizer(self) -> str:
        if self.config is None:
            return "-"
        return f"{self.config.data.tokenizer} ({self.config.model.vocab_size:,})"

    @property
    def parent(self) -> str | None:
        return getattr(self.config.train, "init_from", None) if self.config else None

    @property
    def modified(self) -> datetime:
        """When the run last wrote a file."""
        times = [self.folder.stat().st_mtime]
        for path in self.folder.iterdir():
            try:
                times.append(path.stat().st_mtime)
            except FileNotFoundError:  # a temporary file renamed by a run still writing
                pass
        return datetime.fromtimestamp(max(times))

    def layers(self) -> list[LayerRow]:
        """The model's summary rows (builds the network: imports torch, which listing runs does not need)."""
        from textlstm.model.summary import layer_rows, skeleton

        if self.config is None:
            raise TextlstmError(f"{self.folder}: {self.problem}")
        return layer_rows(skeleton(self.config.model), masked=self.config.data.batching == "documents")

    @property
    def parameters(self) -> int | None:
        return sum(row.parameters for row in self.layers()) if self.config is not None else None

    def as_dict(self) -> dict:
        """Everything `textlstm info --json` prints."""
        layers = self.layers()
        best = self.best or {}
        return {
            "checkpoint": str(self.folder),
            "layers": [row.as_dict() for row in layers],
            "parameters": sum(row.parameters for row in layers),
            "tokenizer": {"kind": self.config.data.tokenizer, "vocab_size": self.config.model.vocab_size},
            "corpus": self.corpus,
            "batching": self.config.data.batching,
            "steps": self.steps,
            "best_step": best.get("step"),
            "best_valid_loss": best.get("valid_loss"),
            "best_valid_bits_per_char": best.get("valid_bits_per_char"),
            "best_valid_perplexity": best.get("valid_perplexity"),
            "parent": self.parent,
            "version": self.config.version,
        }


def read_run(folder: str | Path) -> Run:
    """The run in `folder`; an unreadable config.json is kept as `problem`, not raised."""
    folder = Path(folder)
    if not (folder / files.CONFIG).is_file():
        raise TextlstmError(f"{folder} is not a textlstm run: it has no {files.CONFIG}")
    try:
        config, problem = files.load_config(folder), None
    except TextlstmError as error:
        config, problem = None, str(error)
    return Run(folder, config, read_metrics(folder), problem)


def read_metrics(folder: Path) -> list[dict]:
    """The evaluation records of a run; a line cut short by a crash is skipped."""
    path = Path(folder) / files.METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def list_runs(root: str | Path = "checkpoints") -> list[Run]:
    """Every run folder directly under `root`, the most recently written first."""
    root = Path(root)
    if not root.is_dir():
        raise TextlstmError(f"no run folder {root}/: train a model with `textlstm train`, or pass --root DIR")
    runs = [read_run(config.parent) for config in root.glob(f"*/{files.CONFIG}")]
    return sorted(runs, key=lambda run: run.modified, reverse=True)


def find_run(name: str | Path, root: str | Path = "checkpoints") -> Path:
    """A run given as a folder, by its folder name under `root`, or as "hf://USER/NAME[@REVISION]"."""
    if is_hub_id(name):
        return resolve_checkpoint(name)
    path = Path(name)
    for candidate in (path, Path(root) / path):
        if (candidate / files.CONFIG).is_file():
            return candidate
    raise TextlstmError(f"no run {name}: not a folder holding {files.CONFIG}, nor a run under {root}/")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
