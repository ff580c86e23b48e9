import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textlstm.data.tokenizer import TextTokenizer, build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.tokens import EOT_ID, PAD_ID

TRAINING_TEXT = ["To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"] * 20


@pytest.fixture(scope="module")
def tokenizers():
    return {kind: build_tokenizer(kind, TRAINING_TEXT, vocab_size=300) for kind in ("char", "word", "bpe")}


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_special_tokens_have_fixed_ids(tokenizers, kind):
    tokenizer = tokenizers[kind]
    assert tokenizer.hf.token_to_id("<|pad|>") == PAD_ID
    assert tokenizer.hf.token_to_id("<|endoftext|>") == EOT_ID


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize(
    "text",
    [
        "To be, or not to be",
        "naïve café — 日本語 😀",
        "tabs\tand\r\nnewlines\n\n\n",
        "  leading and trailing  ",
        "\x00\x7f",
    ],
)
def test_char_and_bpe_round_trip_unseen_text(tokenizers, kind, text):
    tokenizer = tokenizers[kind]
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_and_bpe_round_trip_any_unicode(tokenizers, text):
    for kind in ("char", "bpe"):
        tokenizer = tokenizers[kind]
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_char_tokenizer_gives_one_token_per_known_character(tokenizers):
    ids = tokenizers["char"].encode("to be to")
    assert len(ids) == 8
    assert len(set(ids)) == 5
    assert ids[:2] == ids[-2:]


def test_word_tokenizer_maps_unseen_words_to_unknown(tokenizers):
    tokenizer = tokenizers["word"]
    ids = tokenizer.encode("To be zyxwv")
    assert ids[-1] == tokenizer.unk_id
    assert tokenizer.decode(ids) == "To be<|unk|>"
    assert tokenizer.decode(tokenizer.encode("To be, or not")) == "To be, or not"


def test_word_and_bpe_respect_vocab_size():
    text = [" ".join(f"w{i}" for i in range(500))]
    assert build_tokenizer("word", text, vocab_size=50).vocab_size == 50
    assert build_tokenizer("bpe", text * 5, vocab_size=300).vocab_size <= 300


def test_save_and_load_keep_the_encoding(tokenizers, tmp_path):
    for kind, tokenizer in tokenizers.items():
        tokenizer.save(tmp_path / f"{kind}.json")
        loaded = TextTokenizer.load(tmp_path / f"{kind}.json")
        assert loaded.encode("or not to be?") == tokenizer.encode("or not to be?")


def test_loading_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json")
    with pytest.raises(TextlstmError, match="cannot read tokenizer"):
        TextTokenizer.load(path)


def test_unknown_kind_is_refused():
    with pytest.raises(TextlstmError, match="unknown tokenizer"):
        build_tokenizer("sentencepiece", ["x"])
