"""textlstm: train, sample from and evaluate LSTM language models."""

__version__ = "0.1.0"

# The Python API, imported on first use so that `import textlstm` (and the CLI) stays fast without
# torch: `textlstm.load(...)`, `textlstm.TextGenerator`, `textlstm.train(config)`, `textlstm.record_states(text)`, ...
_LAZY_NAMES = {
    "load": "textlstm.generation.generator",
    "TextGenerator": "textlstm.generation.generator",
    "Session": "textlstm.generation.generator",
    "UnknownTokenWarning": "textlstm.generation.generator",
    "SamplingOptions": "textlstm.config",
    "train": "textlstm.training.trainer",
    "evaluate_checkpoint": "textlstm.evaluation.scoring",
    "record_states": "textlstm.inspection.inspector",
    "find_cells": "textlstm.inspection.inspector",
}


def __getattr__(name: str):
    if name in _LAZY_NAMES:
        import importlib

        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'textlstm' has no attribute {name!r}")
