"""textlstm: train, sample from and evaluate LSTM language models."""

__version__ = "0.1.0"
