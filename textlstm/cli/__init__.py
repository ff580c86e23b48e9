"""The `textlstm` command."""
