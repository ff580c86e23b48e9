"""The machine a model runs on: the device, the precision (float32, bfloat16 or float16), torch's CPU threads
and how idle ones wait, and handing memory pages of read data back to the OS.

May import: the top of textlstm only (errors, config, ...), no sub-package.
"""
