"""Generating text: the one token sampler, decoding ids to streamed text, the model's state as
it reads, and the Python generation API (`textlstm.load`, TextGenerator, Session).

May import: `hardware`, `data` (the tokenizer), `model`, `runs` and the top of textlstm.
"""
