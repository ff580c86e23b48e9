"""Speed benchmarks: how fast textlstm trains, scores, generates and serves, and what memory it takes.

Each runs as `python -m benchmarks.speed.NAME` from the repository root. `--quick` runs the same code on a
tiny model and text in seconds, writing to --output-dir or a new temporary folder, never over the recorded
results; tests/test_speed_benchmarks_quick.py runs every one that way."""
