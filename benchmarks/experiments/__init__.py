"""Experiments that set a constant or a default of textlstm: one folder each, immutable once done (README.md)."""
