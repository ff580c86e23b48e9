"""Held-out corpora of 5 to 30 million training characters, built from Debian packages (README.md here);
`python -m benchmarks.corpora.build NAME...` writes them."""
