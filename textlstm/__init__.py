"""textlstm: train, sample from and evaluate LSTM language models."""

__version__ = "0.1.0"

# The sampling API, imported on first use so that `import textlstm` (and the CLI) stays fast
# without torch: `textlstm.load(...)`, `textlstm.TextGenerator`, `textlstm.Session`, ...
_API_NAMES = ("load", "TextGenerator", "Session", "SamplingOptions", "UnknownTokenWarning")


def __getattr__(name: str):
    if name in _API_NAMES:
        from textlstm import api

        return getattr(api, name)
    raise AttributeError(f"module 'textlstm' has no attribute {name!r}")
