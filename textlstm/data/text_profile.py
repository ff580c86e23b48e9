"""What `--tokenizer auto` is chosen from: the training text's size, and how much of it is runs of
spacing (indentation, aligned columns), which a char model reads one step per blank and a BPE
tokenizer merges into a few tokens. Measured once per run on the training split's first
SAMPLE_CHARS characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from textlstm.data.text_pieces import first_chars

SAMPLE_CHARS = 10_000_000  # characters read for the spacing share: a GB corpus is not scanned whole
_SPACING_RUN = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True)
class TextProfile:
    characters: int  # of the whole training split
    spacing_share: float  # of the sample's characters, those in runs of two or more spaces or tabs


def profile_text(characters: int, pieces: Iterable[str]) -> TextProfile:
    """The profile of a training split of `characters` characters whose text comes as `pieces` (in
    order; read until SAMPLE_CHARS characters). A run of blanks cut between two pieces counts as
    two shorter runs: pieces end after a line break where they can, so this is rare."""
    read = in_runs = 0
    for piece in first_chars(pieces, SAMPLE_CHARS):
        read += len(piece)
        in_runs += sum(len(run) for run in _SPACING_RUN.findall(piece))
    return TextProfile(characters, in_runs / read if read else 0.0)
