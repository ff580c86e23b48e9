"""The token names and ids every textlstm vocabulary shares, so the tokenizer, the model, the
sampler and the server agree on them without importing each other.

Every vocabulary has padding at id 0 and end of text at id 1. A char vocabulary also holds the 256
byte-fallback tokens <0x00>..<0xFF>, which spell the UTF-8 bytes of characters it never saw.
"""

from __future__ import annotations

import re

PAD = "<|pad|>"
EOT = "<|endoftext|>"
UNK = "<|unk|>"
PAD_ID = 0
EOT_ID = 1

BYTE_TOKENS = 256
_BYTE_TOKEN = re.compile(r"<0x[0-9A-F]{2}>")


def byte_token(byte: int) -> str:
    """The name of a byte-fallback token, as `tokenizers` spells it."""
    return f"<0x{byte:02X}>"


def is_byte_token(name: str) -> bool:
    return _BYTE_TOKEN.fullmatch(name) is not None
