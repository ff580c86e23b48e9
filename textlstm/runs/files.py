"""The files of a run folder, by name, and its config: what reading a run needs without torch
(`textlstm runs`, `info`, `plot` and the Hub code read these; checkpoint.py loads the weights)."""

from __future__ import annotations

from pathlib import Path

from textlstm.config import RunConfig
from textlstm.errors import TextlstmError

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
BEST_WEIGHTS = "model.safetensors"
TRAINER_STATE = "trainer_state.pt"
METRICS = "metrics.jsonl"
MODEL_CARD = "README.md"


def load_config(folder: Path) -> RunConfig:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise TextlstmError(f"{folder} is not a textlstm checkpoint: it has no {CONFIG}")
    return RunConfig.load(path)
