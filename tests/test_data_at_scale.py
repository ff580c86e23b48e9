"""The fast paths that let a GB-sized corpus tokenize quickly in bounded memory give the same results."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from textlstm.pieces import documents_as_pieces
from textlstm.pageout import page_out_array
from textlstm.tokenizer import _characters_in, build_tokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 50
ODD = ["héllo wörld ✓ 😀 \r\n\t<|endoftext|>", "", "x" * 10, "\u00a0\u2028 tab\there", "日本語のテキスト"]


def test_char_lookup_gives_the_ids_of_tokenizers():
    tokenizer = build_tokenizer("char", [TEXT, "héllo"])
    assert tokenizer._char_lookup is not None
    texts = [TEXT, *ODD]
    assert [list(ids) for ids in tokenizer.encode_arrays(texts)] == tokenizer.encode_batch(texts)


def test_other_tokenizers_keep_the_tokenizers_encoder():
    for kind in ("word", "bpe"):
        tokenizer = build_tokenizer(kind, [TEXT], 300)
        assert tokenizer._char_lookup is None
        assert [list(ids) for ids in tokenizer.encode_arrays([TEXT, *ODD])] == tokenizer.encode_batch([TEXT, *ODD])


def test_characters_in_finds_every_character():
    texts = [TEXT, *ODD]
    assert _characters_in(texts) == set("".join(texts))


def test_a_running_text_comes_in_pieces_that_join_to_it():
    rows = [line + "\n" for line in ("word " * 40000).split("  ")] * 3
    documents = list(documents_as_pieces(iter(rows), documents=False))
    assert len(documents) == 1
    pieces = list(documents[0])
    assert len(pieces) > 1 and "".join(pieces) == "".join(rows)
    assert list(documents_as_pieces(iter([]), documents=False)) == []


def test_page_out_leaves_data_intact():
    array = pa.array(["some text"] * 100_000)
    before = array.to_pylist()
    page_out_array(array)
    assert array.to_pylist() == before
    assert np.frombuffer(array.buffers()[2], dtype=np.uint8).sum() > 0
