"""The held-out benchmark's baselines written from their authors' published code (see README.md here)."""
