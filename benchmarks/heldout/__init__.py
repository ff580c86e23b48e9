"""The held-out table: every system trained for the same minutes on the same corpora, scored on test
(run.py), the protocol they share (protocol.py), and the real-word share of samples (words_score.py)."""
