"""The LSTM language model: embedding, the stacked LSTM (or Mogrifier) layers, dropouts and
penalties, the output layers, one-token `step` for sampling, and its summary table.

May import: `hardware` and the top of textlstm.
"""
