"""A corpus's fingerprint: a hash of its text, the cache key for its tokenized ids."""

from __future__ import annotations

import hashlib

import datasets
import numpy as np
import pyarrow as pa

from textlstm.hardware.memory import page_out_array


def text_fingerprint(train: datasets.Dataset, valid: datasets.Dataset, documents: bool) -> str:
    """A hash of the text itself, so it is the same however the text was found and chunked."""
    digest = hashlib.sha256(b"textlstm corpus v1, documents=%d" % documents)
    for dataset in (train, valid):
        digest.update(_text_digest(dataset))
    return digest.hexdigest()[:16]


def _text_digest(dataset: datasets.Dataset) -> bytes:
    # Row lengths and text bytes go to separate hashes, so Arrow's chunk boundaries do not matter.
    lengths, text = hashlib.sha256(), hashlib.sha256()
    for chunk in dataset.data.column("text").chunks:
        if not len(chunk):
            continue
        offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
        offsets = np.frombuffer(chunk.buffers()[1], dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
        lengths.update(np.diff(offsets).astype(np.int64).tobytes())
        if offsets[-1] > offsets[0]:  # a chunk of empty strings may have no data buffer at all
            text.update(chunk.buffers()[2][int(offsets[0]) : int(offsets[-1])])
        page_out_array(chunk)
    return lengths.digest() + text.digest()
