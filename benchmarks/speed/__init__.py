"""Speed benchmarks: how fast textlstm trains, scores, generates and serves, and what memory it takes.
Each runs as `python -m benchmarks.speed.NAME` from the repository root."""
