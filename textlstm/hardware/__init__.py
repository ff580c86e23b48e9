"""The machine a model runs on: the device, the precision (bfloat16 or float32), torch's CPU threads
and how idle ones wait, and handing memory pages of read data back to the OS.

May import: the top of textlstm only (errors, config, ...), no sub-package.
"""
