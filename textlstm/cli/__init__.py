"""The `textlstm` command: click commands that parse options, call the stages below and print.

May import: `hardware`, `data`, `model`, `runs`, `evaluation`, `generation`, `inspection`, `training`,
`serve` and the top of textlstm.
"""
