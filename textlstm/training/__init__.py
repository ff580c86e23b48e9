"""Training a model: the training loop, learning-rate schedule, optimizer, weight average, the
settings chosen from the corpus and the budget, fine-tuning, several processes, stopping on a signal.

May import: `hardware`, `data`, `model`, `runs`, `evaluation` and the top of textlstm.
"""
