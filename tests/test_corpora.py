"""Tests for textlstm.data.corpora: every kind of --dataset, the train/valid split, and the one-line errors."""

import json
import warnings
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from datasets.packaged_modules.text.text import Text

from textlstm.data.corpora import load_corpus
from textlstm.errors import TextlstmError

SHAKESPEARE = Path(__file__).parents[2] / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
DOCUMENTS = [f"document number {i}: " + "words " * (i + 3) for i in range(12)]


def joined(dataset):
    return "".join(dataset["text"])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


# ---------------------------------------------------------------- the built-in corpus


def test_builtin_corpus_is_python_documentation_over_500_kb():
    from pydoc_data.topics import topics

    corpus = load_corpus()

    everything = joined(corpus.train) + joined(corpus.valid)
    topic_text = "".join(topics[key] for key in sorted(topics))
    assert everything.startswith(topic_text)
    assert "Thread-local objects" in everything[len(topic_text) :]  # the _threading_local module docstring
    assert len(everything.encode("utf-8")) > 500_000
    assert len(joined(corpus.valid)) == len(everything) - int(len(everything) * 0.9)
    assert corpus.name == "pydoc" and corpus.documents
    assert corpus.train.column_names == ["text"] and corpus.valid.column_names == ["text"]
    assert "documentation" in corpus.source


def test_default_corpus_is_the_pydoc_card():
    assert load_corpus().fingerprint == load_corpus("pydoc").fingerprint


# ---------------------------------------------------------------- .txt files: one running text


def test_txt_split_cuts_the_straddling_line_at_the_exact_character(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("héllo\nwörld\n", encoding="utf-8")  # 12 characters, 14 bytes

    corpus = load_corpus(str(path), valid_fraction=0.25)  # boundary: int(12 * 0.75) = 9

    assert corpus.train["text"] == ["héllo\n", "wör"]
    assert corpus.valid["text"] == ["ld\n"]
    assert corpus.name == "poem" and not corpus.documents


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs shared/corpora/tinyshakespeare beside the repo")
def test_tinyshakespeare_keeps_line_breaks_and_splits_like_nanogpt():
    text = SHAKESPEARE.read_text(encoding="utf-8")
    n = len(text)

    corpus = load_corpus(str(SHAKESPEARE))

    assert joined(corpus.train) == text[: int(n * 0.9)]
    assert joined(corpus.valid) == text[int(n * 0.9) :]
    assert all(line.endswith("\n") for line in corpus.train["text"][:-1])
    assert corpus.name == "input" and not corpus.documents


def test_folder_with_split_names_uses_its_own_validation_split(tmp_path):
    (tmp_path / "train.txt").write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "validation.txt").write_text("three\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# not part of the corpus\n", encoding="utf-8")

    corpus = load_corpus(str(tmp_path))

    assert corpus.train["text"] == ["one\n", "two\n"]
    assert corpus.valid["text"] == ["three\n"]


def test_glob_loads_every_matching_file_in_order(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha line\n" * 5, encoding="utf-8")
    (folder / "b.txt").write_text("beta line\n" * 5, encoding="utf-8")
    (folder / "skip.csv").write_text("text\nnot matched\n", encoding="utf-8")

    corpus = load_corpus(str(folder / "*.txt"))

    assert joined(corpus.train) + joined(corpus.valid) == "alpha line\n" * 5 + "beta line\n" * 5
    assert corpus.name == "books"


# ---------------------------------------------------------------- structured files: one row, one document


def write_json_lines(path, column, extra):
    write_jsonl(path, [{"id": i, column: doc, **extra} for i, doc in enumerate(DOCUMENTS)])


def document_table(column, extra):
    constant_columns = {key: [value] * len(DOCUMENTS) for key, value in extra.items()}
    return pa.table({"id": range(len(DOCUMENTS)), column: DOCUMENTS, **constant_columns})


def write_csv(path, column, extra):
    pa_csv.write_csv(document_table(column, extra), path)


def write_parquet(path, column, extra):
    pq.write_table(document_table(column, extra), path)


WRITERS = {"jsonl": write_json_lines, "csv": write_csv, "parquet": write_parquet}


@pytest.mark.parametrize("extension", WRITERS)
@pytest.mark.parametrize(
    ("column", "extra", "text_column"),
    [
        ("body", {"title": "a title"}, "body"),  # named
        ("content", {}, None),  # inferred: the only string column
        ("text", {"title": "a title"}, None),  # inferred: "text" wins over other string columns
    ],
)
def test_structured_files_give_one_document_per_row(tmp_path, extension, column, extra, text_column):
    path = tmp_path / f"docs.{extension}"
    WRITERS[extension](path, column, extra)

    corpus = load_corpus(str(path), text_column=text_column)

    assert corpus.documents
    assert corpus.train.column_names == ["text"]
    assert corpus.train["text"][:3] == DOCUMENTS[:3]
    assert joined(corpus.train) + joined(corpus.valid) == "".join(DOCUMENTS)


def test_rows_without_text_are_dropped(tmp_path):
    (tmp_path / "gaps.csv").write_text("id,text\n1,first\n2,\n3,third\n4,fourth\n", encoding="utf-8")

    corpus = load_corpus(str(tmp_path / "gaps.csv"), valid_fraction=0.2)

    assert list(corpus.train["text"]) + list(corpus.valid["text"]) == ["first", "third", "fo", "urth"]


def test_saved_dataset_dict_keeps_its_splits(tmp_path):
    saved = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": ["a story", "another"], "label": [0, 1]}),
        validation=datasets.Dataset.from_dict({"text": ["held out"], "label": [1]}),
    )
    saved.save_to_disk(str(tmp_path / "saved"))

    corpus = load_corpus(str(tmp_path / "saved"))

    assert corpus.train["text"] == ["a story", "another"]
    assert corpus.valid["text"] == ["held out"]
    assert corpus.name == "saved"


def test_saved_dataset_is_split_by_characters(tmp_path):
    datasets.Dataset.from_dict({"story": ["0123456789"] * 10}).save_to_disk(str(tmp_path / "one"))

    corpus = load_corpus(str(tmp_path / "one"))

    assert len(corpus.train) == 9 and corpus.valid["text"] == ["0123456789"]


# ---------------------------------------------------------------- fingerprints


def test_fingerprint_is_stable_and_follows_the_text_and_options(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("the same words\n" * 50, encoding="utf-8")
    second.write_text("the same words\n" * 49 + "the same wordz\n", encoding="utf-8")

    fingerprint = load_corpus(str(first)).fingerprint

    assert load_corpus(str(first)).fingerprint == fingerprint
    assert load_corpus(str(second)).fingerprint != fingerprint
    assert load_corpus(str(first), valid_fraction=0.2).fingerprint != fingerprint


def test_fingerprint_separates_documents_from_running_text(tmp_path):
    (tmp_path / "lines.txt").write_text("one\ntwo\nthree\nfour\n", encoding="utf-8")
    write_jsonl(tmp_path / "lines.jsonl", [{"text": line} for line in ["one\n", "two\n", "three\n", "four\n"]])

    as_lines = load_corpus(str(tmp_path / "lines.txt"))
    as_documents = load_corpus(str(tmp_path / "lines.jsonl"))

    assert joined(as_lines.train) == joined(as_documents.train)
    assert as_lines.fingerprint != as_documents.fingerprint


# ---------------------------------------------------------------- corpus cards


def test_card_in_the_working_folder_sets_path_column_fraction_and_documents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    # Two string columns: without the card's text_column the text column could not be inferred.
    write_jsonl(tmp_path / "data" / "notes.jsonl", [{"title": "a title", "note": "0123456789"}] * 4)
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "notes.toml").write_text(
        'description = "my notes"\npath = "../data/notes.jsonl"\ntext_column = "note"\nvalid_fraction = 0.25\n'
        "documents = false\n",
        encoding="utf-8",
    )

    corpus = load_corpus("notes")

    assert corpus.name == "notes"
    assert corpus.train["text"] == ["0123456789"] * 3 and corpus.valid["text"] == ["0123456789"]
    assert not corpus.documents  # rows of a .jsonl file are documents unless the card says otherwise


def test_card_that_points_nowhere_names_the_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "gone.toml").write_text('description = "needs a mount"\npath = "missing.txt"\n')

    with pytest.raises(TextlstmError, match=r"no such file or folder: .*missing.txt .*gone.*needs a mount"):
        load_corpus("gone")


def test_card_with_two_sources_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / "both.toml").write_text('builtin = "pydoc_data"\nhub = "a/b"\n')

    with pytest.raises(TextlstmError, match="exactly one of"):
        load_corpus("both")


# ---------------------------------------------------------------- the Hugging Face Hub, offline


def test_hub_id_offline_fails_with_one_line():
    with pytest.raises(TextlstmError, match=r"could not load 'someone/nothing' from the Hugging Face Hub \(offline"):
        load_corpus("someone/nothing")


def test_hub_dataset_with_a_loading_script_is_refused_in_one_line(tmp_path):
    from textlstm.data.corpora.hub import load_hub

    (tmp_path / "scripted").mkdir()
    (tmp_path / "scripted" / "scripted.py").write_text("import datasets\n", encoding="utf-8")

    with pytest.raises(
        TextlstmError, match="a dataset with a loading script, and textlstm reads only datasets of plain"
    ):
        load_hub(str(tmp_path / "scripted"), None)


def test_unknown_bare_name_lists_the_shipped_cards_from_any_working_folder(tmp_path):
    # Tests run in tmp_path (conftest), which has no corpora/: the cards listed are those shipped in the package.
    assert Path.cwd() == tmp_path and not (tmp_path / "corpora").exists()

    with pytest.raises(TextlstmError, match=r"corpus card \(cards: .*\bpydoc\b.*\btinyshakespeare\b"):
        load_corpus("no-such-corpus")


def cache_hub_dataset(cache, repo_id, files):
    """Lay out `repo_id` in the datasets cache the way an online load_dataset(repo_id) leaves it."""
    namespace, name = repo_id.split("/")
    builder = Text(dataset_name=name, data_files=files, keep_linebreaks=True, cache_dir=str(cache.parent / "scratch"))
    builder.download_and_prepare(output_dir=str(cache / f"{namespace}___{name}" / "default" / "0.0.0" / ("0" * 40)))


def test_hub_dataset_is_served_offline_from_the_datasets_cache(tmp_path, offline_and_isolated):
    (tmp_path / "train.txt").write_text("to be or not to be\n" * 20, encoding="utf-8")
    (tmp_path / "validation.txt").write_text("that is the question\n", encoding="utf-8")
    files = {"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "validation.txt")}
    cache_hub_dataset(offline_and_isolated, "someone/hamlet", files)

    corpus = load_corpus("someone/hamlet")

    assert corpus.name == "someone_hamlet"
    assert joined(corpus.train) == "to be or not to be\n" * 20
    assert corpus.valid["text"] == ["that is the question\n"]
    assert "offline" in corpus.source
    with pytest.raises(TextlstmError, match="could not load 'someone/hamlet'.*'other'"):
        load_corpus("someone/hamlet", config="other")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("argument", ["./missing", "missing.txt", "some/deep/folder", "~/no-such-corpus.csv"])
def test_missing_path(argument):
    with pytest.raises(TextlstmError, match="no such file or folder"):
        load_corpus(argument)


def test_glob_that_matches_nothing(tmp_path):
    with pytest.raises(TextlstmError, match="no files match"):
        load_corpus(str(tmp_path / "*.txt"))


@pytest.mark.parametrize(
    ("file_name", "content"),
    [("empty.txt", ""), ("blank.jsonl", '{"text": ""}\n{"text": ""}\n'), ("empty.csv", ""), ("empty.jsonl", "")],
)
def test_empty_corpus(tmp_path, file_name, content):
    (tmp_path / file_name).write_text(content, encoding="utf-8")

    with pytest.raises(TextlstmError, match="is empty"):
        load_corpus(str(tmp_path / file_name))


def test_corpus_too_small_to_hold_out_validation(tmp_path):
    (tmp_path / "tiny.txt").write_text("a", encoding="utf-8")

    with pytest.raises(TextlstmError, match="too small"):
        load_corpus(str(tmp_path / "tiny.txt"))


def test_text_column_that_does_not_exist_lists_the_columns(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", [{"body": "words", "id": 1}])

    with pytest.raises(TextlstmError, match=r"no column 'story'.*columns: body \(string\), id \(int64\)"):
        load_corpus(str(tmp_path / "docs.jsonl"), text_column="story")


def test_text_column_that_is_not_text(tmp_path):
    write_jsonl(tmp_path / "docs.jsonl", [{"body": "words", "id": 1}])

    with pytest.raises(TextlstmError, match="column 'id' .* holds int64, not text"):
        load_corpus(str(tmp_path / "docs.jsonl"), text_column="id")


@pytest.mark.parametrize("rows", [[{"title": "t", "body": "b"}], [{"id": 1, "score": 0.5}]])
def test_text_column_that_cannot_be_inferred(tmp_path, rows):
    write_jsonl(tmp_path / "docs.jsonl", rows)

    with pytest.raises(TextlstmError, match="cannot tell which column holds the text"):
        load_corpus(str(tmp_path / "docs.jsonl"))


@pytest.mark.parametrize(
    ("file_name", "content"),
    [("bad.txt", b"good line\nbad \xff line\n" * 5), ("bad.csv", b"text\ngood\nbad \xff\n" * 5)],
)
def test_invalid_utf8_is_replaced_with_one_warning(tmp_path, file_name, content):
    (tmp_path / file_name).write_bytes(content)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        corpus = load_corpus(str(tmp_path / file_name))

    messages = [str(warning.message) for warning in caught if "UTF-8" in str(warning.message)]
    assert len(messages) == 1 and file_name in messages[0] and "U+FFFD" in messages[0]
    assert "\ufffd" in joined(corpus.train) + joined(corpus.valid)


def test_invalid_utf8_in_json_is_refused(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "good"}\n{"text": "bad \xff"}\n')

    with pytest.raises(TextlstmError, match="bad.jsonl is not valid UTF-8"):
        load_corpus(str(tmp_path / "bad.jsonl"))


def test_malformed_json_is_one_line(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")

    with pytest.raises(TextlstmError, match="could not read .*broken.jsonl"):
        load_corpus(str(tmp_path / "broken.jsonl"))


def test_mixed_file_types_are_refused(tmp_path):
    (tmp_path / "a.txt").write_text("words\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("text\nwords\n", encoding="utf-8")

    with pytest.raises(TextlstmError, match=r"mixed file types \(.csv, .txt\)"):
        load_corpus(str(tmp_path))


def test_unsupported_file_type_is_refused(tmp_path):
    (tmp_path / "notes.md").write_text("# words\n", encoding="utf-8")

    with pytest.raises(TextlstmError, match="unsupported file type .md"):
        load_corpus(str(tmp_path / "notes.md"))


def test_unknown_split_lists_the_available_ones(tmp_path):
    (tmp_path / "train.txt").write_text("one\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("two\n", encoding="utf-8")

    with pytest.raises(TextlstmError, match=r"no split 'dev' \(available: test, train\)"):
        load_corpus(str(tmp_path), split="dev")
    with pytest.raises(TextlstmError, match=r"no split 'validation' \(available: test, train\)"):
        load_corpus(str(tmp_path), valid_split="validation")


@pytest.mark.parametrize("fraction", [0, 1, -0.5, 1.5])
def test_valid_fraction_out_of_range(fraction):
    with pytest.raises(TextlstmError, match="valid_fraction must be between 0 and 1"):
        load_corpus(valid_fraction=fraction)


# ---------------------------------------------------------------- stored and streamed: one resolver


def refusal(load, dataset) -> str:
    with pytest.raises(TextlstmError) as caught:
        load(dataset)
    return str(caught.value)


@pytest.mark.parametrize(
    "dataset",
    [
        "missing/corpus.jsonl",
        "{tmp}/none/*.txt",
        "{tmp}/empty.txt",
        "{tmp}/notes.md",
        "someone/nothing",
        "no-such-corpus",
    ],
)
def test_a_stored_and_a_streamed_corpus_refuse_the_same_dataset_with_the_same_line(tmp_path, dataset):
    from textlstm.data.corpora.streamed import open_streamed

    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "notes.md").write_text("# words\n", encoding="utf-8")
    dataset = dataset.format(tmp=tmp_path)
    assert refusal(load_corpus, dataset) == refusal(open_streamed, dataset)


def test_a_glob_names_a_stored_and_a_streamed_corpus_alike(tmp_path):
    from textlstm.data.corpora.streamed import open_streamed

    (tmp_path / "library" / "shelf").mkdir(parents=True)
    (tmp_path / "library" / "shelf" / "a.txt").write_text("alpha line\n" * 5, encoding="utf-8")
    pattern = str(tmp_path / "library" / "**" / "*.txt")
    assert load_corpus(pattern).name == open_streamed(pattern).name == "library"
