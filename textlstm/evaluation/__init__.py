"""Scoring text with a model: loss, perplexity and bits per character or byte of a split, and
dynamic evaluation.

May import: `hardware`, `data`, `model`, `runs` and the top of textlstm.
"""
