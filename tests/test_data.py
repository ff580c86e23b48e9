"""The batchers' layout (what training reads, and in what order), data.prepare and the id cache (data.token_ids)."""

from __future__ import annotations

import numpy as np
import pytest

from textlstm.config import DataConfig
from textlstm.data.batchers import DocumentBatcher, StreamBatcher
from textlstm.data.prepare import prepare
from textlstm.data.tokenizer import build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.tokens import EOT_ID, PAD_ID

# ---------------------------------------------------------------- StreamBatcher

STREAM = np.arange(1000, 1000 + 203)  # every id tells its own position


def rows_of(batcher: StreamBatcher) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of every batch, joined along time: one long row per batch row."""
    batches = [batcher.batch(i) for i in range(len(batcher))]
    return np.concatenate([x for x, _ in batches], axis=1), np.concatenate([y for _, y in batches], axis=1)


def test_stream_batch_i_is_columns_i_of_each_rows_contiguous_slice():
    batcher = StreamBatcher(STREAM, batch_size=4, seq_len=7)
    row_len = (len(STREAM) - 1) // 4  # 50
    assert len(batcher) == -(-row_len // 7)
    for i in range(len(batcher)):
        inputs, targets = batcher.batch(i)
        width = min(7, row_len - i * 7)
        assert inputs.shape == targets.shape == (4, width)
        for row in range(4):
            start = row * row_len + i * 7
            assert inputs[row].tolist() == STREAM[start : start + width].tolist()
            assert targets[row].tolist() == STREAM[start + 1 : start + width + 1].tolist()


def test_each_stream_batch_continues_where_the_one_before_ended():
    batcher = StreamBatcher(STREAM, batch_size=3, seq_len=5)
    for i in range(len(batcher) - 1):
        (_, targets), (inputs, _) = batcher.batch(i), batcher.batch(i + 1)
        assert inputs[:, 0].tolist() == targets[:, -1].tolist()
    inputs, targets = rows_of(batcher)
    row_len = (len(STREAM) - 1) // 3
    for row in range(3):  # read in order, each row is its own slice of the stream, whole
        assert inputs[row].tolist() == STREAM[row * row_len : (row + 1) * row_len].tolist()
        assert targets[row].tolist() == STREAM[row * row_len + 1 : (row + 1) * row_len + 1].tolist()


def test_ranks_read_disjoint_rows_that_together_are_the_single_process_rows():
    world = 3
    alone = rows_of(StreamBatcher(STREAM, batch_size=2 * world, seq_len=6))[0]
    per_rank = [
        rows_of(StreamBatcher(STREAM, batch_size=2, seq_len=6, rank=r, world_size=world))[0] for r in range(world)
    ]
    seen = [set(rows.flatten().tolist()) for rows in per_rank]
    for a in range(world):
        for b in range(a + 1, world):
            assert not seen[a] & seen[b]
    assert np.concatenate(per_rank).tolist() == alone.tolist()


def test_too_short_a_stream_is_an_error():
    with pytest.raises(TextlstmError, match="lower --batch-size"):
        StreamBatcher(np.arange(5), batch_size=8, seq_len=4)


# ---------------------------------------------------------------- DocumentBatcher

SEQ_LEN = 4


def documents_stream(lengths: list[int]) -> tuple[np.ndarray, set[tuple[int, ...]]]:
    """`EOT doc EOT doc ... EOT` with distinct ids, and the windows DocumentBatcher must cut it into:
    each `EOT doc EOT` in pieces of SEQ_LEN + 1 ids overlapping by one (as inputs + last target)."""
    ids, windows, next_id = [EOT_ID], set(), 2
    for length in lengths:
        document = [EOT_ID, *range(next_id, next_id + length), EOT_ID]
        next_id += length
        ids += document[1:]
        for start in range(0, len(document) - 1, SEQ_LEN):
            windows.add(tuple(document[start : start + SEQ_LEN + 1]))
    return np.array(ids), windows


def windows_read(batcher: DocumentBatcher, epoch: int) -> list[tuple[int, ...]]:
    """Every window of one epoch, in order, as its ids (inputs then the last target), checking each batch's layout."""
    read = []
    for i in range(len(batcher)):
        inputs, targets, lengths = batcher.batch(i, epoch)
        for row, length in enumerate(lengths.tolist()):
            assert inputs[row, 1:length].tolist() == targets[row, : length - 1].tolist()  # targets shifted by one
            assert set(targets[row, length:].tolist()) <= {PAD_ID}  # past its length: padding, no loss
            read.append((*inputs[row, :length].tolist(), int(targets[row, length - 1])))
    return read


LENGTHS = [1, 3, 4, 5, 9, 2, 11, 6, 7, 1, 8, 3, 2, 2]  # 24 windows of at most SEQ_LEN + 1 ids


def test_every_window_is_read_once_per_epoch():
    ids, windows = documents_stream(LENGTHS)
    assert len(windows) == 24
    batcher = DocumentBatcher(ids, batch_size=4, seq_len=SEQ_LEN, seed=0)
    assert len(batcher) == 6
    for epoch in range(3):
        read = windows_read(batcher, epoch)
        assert len(read) == len(set(read)) == 24 and set(read) == windows


def test_windows_that_do_not_fill_a_batch_wait_for_another_epoch():
    ids, windows = documents_stream(LENGTHS)
    batcher = DocumentBatcher(ids, batch_size=5, seq_len=SEQ_LEN, seed=0)  # 24 windows: 4 batches of 5, 4 left
    read = windows_read(batcher, 0)
    assert len(read) == len(set(read)) == 20 and set(read) <= windows
    assert set(windows_read(batcher, 0) + windows_read(batcher, 1) + windows_read(batcher, 2)) == windows


def test_order_is_shuffled_per_epoch_and_repeats_for_the_same_seed_and_epoch():
    ids, _ = documents_stream(LENGTHS)
    batcher = DocumentBatcher(ids, batch_size=4, seq_len=SEQ_LEN, seed=3)
    first, second = windows_read(batcher, 0), windows_read(batcher, 1)
    assert first != second
    again = DocumentBatcher(ids, batch_size=4, seq_len=SEQ_LEN, seed=3)  # a resumed run builds it anew
    assert windows_read(again, 1) == second and windows_read(again, 0) == first
    assert windows_read(DocumentBatcher(ids, batch_size=4, seq_len=SEQ_LEN, seed=4), 0) != first


def test_ranks_read_disjoint_windows_that_together_are_all_of_them():
    ids, windows = documents_stream(LENGTHS)
    per_rank = [
        windows_read(DocumentBatcher(ids, batch_size=3, seq_len=SEQ_LEN, seed=0, rank=rank, world_size=2), epoch=1)
        for rank in range(2)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert set(per_rank[0]) | set(per_rank[1]) == windows


# ---------------------------------------------------------------- prepare


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "play.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 40, encoding="utf-8")
    return path


def test_prepare_trains_a_tokenizer_once_then_reads_it_and_the_ids_from_the_cache(text_file, monkeypatch):
    import textlstm.data.token_ids as token_ids
    import textlstm.data.tokenizer as tokenizer

    lines = []
    first = prepare(DataConfig(dataset=str(text_file), tokenizer="char"), report=lines.append)
    assert [line.split(":")[0] for line in lines] == ["corpus", "tokens"]
    assert first.splits["train"].info.tokens > first.splits["valid"].info.tokens > 1

    def fail(*_, **__):
        raise AssertionError("built again")

    monkeypatch.setattr(tokenizer, "build_tokenizer", fail)
    monkeypatch.setattr(token_ids, "_encode_to_file", fail)
    again = prepare(DataConfig(dataset=str(text_file), tokenizer="char"))
    assert again.tokenizer.to_str() == first.tokenizer.to_str()
    assert again.splits["valid"].ids.tolist() == first.splits["valid"].ids.tolist()


def test_tokenizer_auto_is_left_to_the_trainer(text_file):
    with pytest.raises(TextlstmError, match="tokenizer 'auto' is chosen by the trainer"):
        prepare(DataConfig(dataset=str(text_file)))


def test_prepare_uses_a_given_tokenizer_and_only_the_splits_asked_for(text_file, monkeypatch):
    import textlstm.data.tokenizer as tokenizer

    given = build_tokenizer("bpe", ["To be, or not to be"], 280)
    monkeypatch.setattr(tokenizer, "build_tokenizer", lambda *_, **__: pytest.fail("trained a tokenizer"))
    prepared = prepare(DataConfig(dataset=str(text_file)), given, splits=("valid",))
    assert prepared.tokenizer is given and list(prepared.splits) == ["valid"]
    valid_text = "".join(prepared.corpus.valid["text"])
    assert prepared.splits["valid"].ids.tolist() == [EOT_ID, *given.encode(valid_text), EOT_ID]


def test_prepare_refuses_a_validation_split_without_tokens(text_file, monkeypatch):
    import textlstm.data.token_ids as token_ids
    from textlstm.data.token_ids import SplitInfo

    def nothing(dataset, documents, tokenizer, path, progress=None):
        np.array([EOT_ID], dtype=np.uint16).tofile(path)
        return SplitInfo(tokens=1, chars=0, bytes=0, documents=0, dtype="uint16")

    monkeypatch.setattr(token_ids, "_encode_to_file", nothing)
    with pytest.raises(TextlstmError, match="validation split of play is empty"):
        prepare(DataConfig(dataset=str(text_file), tokenizer="char"), splits=("valid",))


@pytest.mark.parametrize("change", ["tokenizers version", "datasets version", "building code"])
def test_another_library_version_or_building_code_gets_new_cache_entries(text_file, monkeypatch, change):
    """A stale entry, written by other code, is not read: here the old ids are spoilt to tell them apart."""
    import datasets
    import tokenizers

    from textlstm.data import cache

    data = DataConfig(dataset=str(text_file), tokenizer="char")
    first = prepare(data)
    old_entries = sorted((cache.cache_root() / "ids").iterdir())
    stale = old_entries[0] / "valid.bin"
    stale.write_bytes(bytes(stale.stat().st_size))  # every id PAD
    if change == "building code":
        monkeypatch.setattr(cache, "code_digest", lambda: "the code of another textlstm")
    else:
        library = tokenizers if change.startswith("tokenizers") else datasets
        monkeypatch.setattr(library, "__version__", library.__version__ + ".post1")

    again = prepare(data)

    assert again.splits["valid"].ids.tolist() == [
        EOT_ID,
        *first.tokenizer.encode("".join(first.corpus.valid["text"])),
        EOT_ID,
    ]
    assert len(list((cache.cache_root() / "ids").iterdir())) == len(old_entries) + 1
    assert len(list((cache.cache_root() / "tokenizers").iterdir())) == 2
