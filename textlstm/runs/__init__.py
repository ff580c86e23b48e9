"""Run folders and what they hold: checkpoint files (written atomically, read without pickles),
the folder of a new run, reading saved runs back (listing, metrics), plots.

May import: `hardware`, `data` (the tokenizer), `model` and the top of textlstm.
"""
