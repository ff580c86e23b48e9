"""The held-out benchmark's corpus builder and its bits-per-character accounting (benchmarks/heldout/,
benchmarks/corpora/, benchmarks/baselines/)."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
import torch

from benchmarks.baselines import char_transformer as transformer
from benchmarks.baselines import word_lstm_capped as word_lstm
from benchmarks.corpora import first_seven as corpora
from benchmarks.heldout.protocol import bits_per_char, read_split, scored_chars
from textlstm.data.corpora.files import load_path


def test_documents_split_about_90_5_5_by_name_the_same_way_every_time():
    names = [f"module_{i}.py" for i in range(4000)]
    splits = [corpora.split_of(name) for name in names]
    assert splits == [corpora.split_of(name) for name in names]
    assert 0.88 < splits.count("train") / len(names) < 0.92
    assert 0.035 < splits.count("test") / len(names) < 0.065


def test_docstrings_of_functions_and_classes_in_source_order_without_the_modules():
    source = b'''"""Module docstring."""
class Shape:
    """A shape."""
    def area(self):
        """Its area."""
def undocumented():
    return 1
async def fetch():
    """  Fetch it.

        Indented detail.
    """
'''
    assert corpora.definition_docstrings(source) == ["A shape.", "Its area.", "Fetch it.\n\nIndented detail."]


def _write_mo(path: Path, messages: dict[str, str]) -> None:
    """A GNU .mo catalog (the format msgfmt writes), without a hash table."""
    keys = sorted(messages)
    ids = [key.encode() for key in keys]
    strs = [messages[key].encode() for key in keys]
    header_size = 7 * 4
    originals_at = header_size
    translations_at = originals_at + 8 * len(keys)
    data_at = translations_at + 8 * len(keys)
    table, data = [], b""
    for blob in ids + strs:
        table.append((len(blob), data_at + len(data)))
        data += blob + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, len(keys), originals_at, translations_at, 0, 0)
    path.write_bytes(header + b"".join(struct.pack("<2I", *entry) for entry in table) + data)


def test_german_catalogs_give_their_translations_one_document_per_catalog(tmp_path):
    _write_mo(tmp_path / "b.mo", {"": "Content-Type: text/plain; charset=UTF-8\n", "World": "Welt", "Hello": "Hallo"})
    _write_mo(tmp_path / "a.mo", {"": "Content-Type: text/plain; charset=UTF-8\n", "Size": "Größe"})
    assert corpora.german_documents(tmp_path) == [("a.mo", "Größe"), ("b.mo", "Hallo\nWelt")]
    assert corpora.german_documents(tmp_path / "missing") is None


def test_a_written_corpus_loads_in_textlstm_with_its_three_splits(tmp_path):
    documents = [(f"doc{i}", f"text of document {i}\nsecond line") for i in range(200)]
    sizes = corpora.write_corpus(tmp_path / "corpus", documents)
    loaded = load_path(tmp_path / "corpus")
    assert loaded.documents
    for split in corpora.SPLITS:
        assert loaded.splits[split]["text"] == read_split(tmp_path / "corpus", split)
        assert len(loaded.splits[split]) == sizes[split]["documents"] > 0
    assert sum(s["documents"] for s in sizes.values()) == 200


def test_unknown_words_pay_for_their_spelling_by_a_character_unigram():
    spelling = word_lstm.SpellingModel(["ab ab b"], test_chars={"a", "c"})
    # a 2, b 3, end-of-word 3 (tokens), add-one over a, b, end and unknown: 12 in all
    assert spelling.nats("ba") == pytest.approx(-math.log(4 / 12) - math.log(3 / 12) - math.log(4 / 12))
    # one unseen character in the test text: naming it costs nothing more than the unknown symbol
    assert spelling.nats("c") == pytest.approx(-math.log(1 / 12) - math.log(4 / 12))
    two_unseen = word_lstm.SpellingModel(["ab ab b"], test_chars={"c", "d"})
    assert two_unseen.nats("c") == pytest.approx(-math.log(1 / 12) + math.log(2) - math.log(4 / 12))


def test_word_stream_scores_every_token_once_and_counts_characters_like_textlstm():
    vocabulary = word_lstm.build_vocabulary(["the cat, the cat.\nthe dog"])
    assert vocabulary == ["<unk>", "<eos>", "the", "cat"]
    index = {word: i for i, word in enumerate(vocabulary)}
    test = ["the  bird,\nthe cat"]
    ids, unknown = word_lstm.encode(test, index)
    assert unknown == ["bird", ",", "\n"]
    assert len(ids) == 1 + 6 + 1  # leading <eos>, six tokens, the document's <eos>
    model = word_lstm.WordLSTM(len(vocabulary))
    with torch.no_grad():  # a uniform prediction: ln 4 nats per token whatever the input
        model.output.weight.zero_()
        model.output.bias.zero_()
    assert word_lstm.stream_nats(model, ids) == pytest.approx(7 * math.log(4), rel=1e-5)
    assert scored_chars(test) == 18 + 1
    assert bits_per_char(7 * math.log(4), 19) == pytest.approx(14 / 19)


def _window_start(target: int, length: int) -> int:
    """Where the window that scores `target` starts: the first BLOCK targets share the first window,
    later targets go to windows ending at BLOCK + k * STRIDE (the last one at the end of the text)."""
    if target <= transformer.BLOCK:
        return 0
    end = transformer.BLOCK + math.ceil((target - transformer.BLOCK) / transformer.STRIDE) * transformer.STRIDE
    return min(end, length - 1) - transformer.BLOCK


def test_transformer_windows_score_each_character_once_with_at_least_32_characters_of_context():
    torch.manual_seed(0)
    model = transformer.CharTransformer(vocab_size=7).eval()
    ids = torch.randint(7, (230,))
    expected = 0.0
    with torch.no_grad():
        for target in range(1, len(ids)):
            start = _window_start(target, len(ids))
            assert target - start >= min(target, transformer.STRIDE)
            logits = model(ids[start:target].unsqueeze(0))[0, -1]
            expected += -torch.log_softmax(logits, -1)[ids[target]].item()
    assert transformer.stream_nats(model, ids) == pytest.approx(expected, rel=1e-5)


def test_unknown_test_characters_pay_the_unknown_symbol_and_which_one_it_is():
    vocabulary = transformer.CharVocabulary(["abc"])
    ids = vocabulary.encode(["ax", "y"])
    assert ids.tolist() == [
        transformer.EOD,
        2,
        transformer.UNKNOWN,
        transformer.EOD,
        transformer.UNKNOWN,
        transformer.EOD,
    ]
    model = transformer.CharTransformer(vocabulary.size).eval()
    with torch.no_grad():  # all-zero logits: uniform over the 5 symbols
        model.tokens.weight.zero_()
    nats = transformer.stream_nats(model, ids, unknown_extra=math.log(2))
    assert nats == pytest.approx(5 * math.log(5) + 2 * math.log(2), rel=1e-5)
    assert scored_chars(["ax", "y"]) == len(ids) - 1


def test_the_results_name_no_path_of_the_machine_they_ran_on(tmp_path):
    import json
    import sys

    from benchmarks.heldout.run import without_machine_paths

    work = Path.home() / ".cache" / "runs"
    record = {
        "command": f"taskset -c 0 {sys.executable} -m textlstm train --output {work}/handbook/textlstm",
        "data": str(Path.home() / ".cache" / "textlstm" / "heldout" / "handbook"),
    }
    recorded = json.loads(without_machine_paths(json.dumps(record), work))
    assert recorded == {
        "command": "taskset -c 0 python -m textlstm train --output RUNS/handbook/textlstm",
        "data": "~/.cache/textlstm/heldout/handbook",
    }
