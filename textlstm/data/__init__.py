"""From a corpus source to batches of token ids."""
