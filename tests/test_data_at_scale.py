"""The fast paths that let a GB-sized corpus tokenize quickly in bounded memory give the same results."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from textlstm.data.text_pieces import documents_as_pieces
from textlstm.data.tokenizer import _characters_in, build_tokenizer
from textlstm.hardware.memory import page_out_array

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 50
ODD = ["héllo wörld ✓ 😀 \r\n\t<|endoftext|>", "", "x" * 10, "\u00a0\u2028 tab\there", "日本語のテキスト"]


def test_char_lookup_gives_the_ids_of_tokenizers():
    tokenizer = build_tokenizer("char", [TEXT, "héllo"])
    assert tokenizer._char_lookup is not None
    texts = [TEXT, *ODD]
    assert [list(ids) for ids in tokenizer.encode_arrays(texts)] == [tokenizer.encode(text) for text in texts]


def test_other_tokenizers_keep_the_tokenizers_encoder():
    for kind in ("word", "bpe"):
        tokenizer = build_tokenizer(kind, [TEXT], 300)
        assert tokenizer._char_lookup is None
        assert [list(ids) for ids in tokenizer.encode_arrays([TEXT, *ODD])] == [
            tokenizer.encode(text) for text in [TEXT, *ODD]
        ]


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


def _resident_kb_of_mapping(address: int) -> int:
    """Resident memory (KB) of the mapping of this process that holds `address`, from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if not head.endswith(":"):  # a mapping's first line: "start-end perms ..."
            low, high = (int(bound, 16) for bound in head.split("-"))
            inside = low <= address < high
        elif inside and head == "Rss:":
            return int(line.split()[1])
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or tuple(map(int, platform.release().split(".")[:2])) < (5, 4),
    reason="MADV_PAGEOUT needs Linux 5.4+",
)
def test_page_out_hands_back_the_pages_of_memory_mapped_text_and_keeps_it(tmp_path):
    """Arrow text memory-mapped as `datasets` maps it: read whole, then paged out and read again."""
    path = tmp_path / "text.arrow"
    table = pa.table({"text": [f"line {i} of the corpus " * 10 for i in range(40_000)]})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    chunk = pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("text").chunks[0]
    text_buffer = chunk.buffers()[2]
    before = chunk.to_pylist()
    resident = _resident_kb_of_mapping(text_buffer.address)
    assert resident * 1024 >= text_buffer.size * 0.9  # reading it brought it all in

    page_out_array(chunk)

    assert _resident_kb_of_mapping(text_buffer.address) <= resident * 0.1
    assert chunk.to_pylist() == before  # read back from the file
