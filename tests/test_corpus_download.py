"""Corpus cards whose text is a download: fetched once into the cache, checked, and never from the network here."""

import hashlib
import urllib.error

import huggingface_hub.constants
import pytest

from conftest import TINYSHAKESPEARE
from textlstm.data.corpora import download, load_corpus
from textlstm.data.corpora.download import Download, fetched
from textlstm.errors import TextlstmError

TEXT = "to be, or not to be: that is the question\n" * 50


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def served(tmp_path):
    """A file to download with a file:// URL, and the Download that names it rightly."""
    source = tmp_path / "served" / "hamlet.txt"
    source.parent.mkdir()
    source.write_text(TEXT, encoding="utf-8")
    data = source.read_bytes()
    return Download("hamlet", source.as_uri(), len(data), hashlib.sha256(data).hexdigest())


def write_card(tmp_path, name, body):
    (tmp_path / "corpora").mkdir(exist_ok=True)
    (tmp_path / "corpora" / f"{name}.toml").write_text(body, encoding="utf-8")


def test_a_download_is_fetched_once_into_the_cache_and_checked(served, online, monkeypatch, tmp_path, capfd):
    path = fetched(served)

    assert path == tmp_path / "textlstm-cache" / "downloads" / "hamlet" / "hamlet.txt"
    assert path.read_text(encoding="utf-8") == TEXT
    assert served.url in capfd.readouterr().err  # it says what it downloads
    assert [file.name for file in path.parent.iterdir()] == ["hamlet.txt"]  # no temporary file left

    monkeypatch.setattr(download, "open_url", lambda url: pytest.fail("downloaded twice"))
    assert fetched(served) == path


@pytest.mark.parametrize(
    "wrong,said",
    [
        ({"sha256": "0" * 64}, r"SHA-256 [0-9a-f]{64}, not 0{64}"),
        ({"size": len(TEXT) - 1}, f"{len(TEXT) - 1:,}"),  # longer than it should be: no more is read
        ({"size": len(TEXT) + 1}, f"{len(TEXT):,} bytes, not {len(TEXT) + 1:,}"),
    ],
)
def test_a_download_that_fails_its_check_is_one_error_and_is_not_kept(served, online, wrong, said):
    named = Download(**{**served.__dict__, **wrong})

    refusal = f"download of {served.url} is not the file corpus card 'hamlet' names .*{said}"
    with pytest.raises(TextlstmError, match=refusal):
        fetched(named)

    assert list(named.path.parent.iterdir()) == []


def test_a_failed_connection_says_what_to_download_and_where_to_save_it(served, online, monkeypatch):
    def refuse(url):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(download, "open_url", refuse)

    with pytest.raises(TextlstmError) as error:
        fetched(served)

    assert str(error.value) == (
        f"could not download {served.url} ([Errno -2] Name or service not known): "
        f"download it some other way and save it as {served.path}"
    )
    assert not served.path.exists()


def test_a_cached_file_that_is_not_the_one_named_is_refused_and_left_alone(served, online):
    served.path.parent.mkdir(parents=True)
    served.path.write_text(TEXT.upper(), encoding="utf-8")  # the same size, other bytes

    with pytest.raises(TextlstmError, match=f"{served.path} is not the file corpus card 'hamlet' names .*delete it"):
        fetched(served)

    assert served.path.read_text(encoding="utf-8") == TEXT.upper()


def test_downloads_in_tests_cannot_reach_the_network(online):
    url = "https://example.com/corpus.txt"

    with pytest.raises(AssertionError, match=f"a test tried to download {url}"):
        fetched(Download("example", url, 10, "0" * 64))


def test_a_card_with_a_url_loads_its_download(served, online, tmp_path):
    write_card(tmp_path, "hamlet", f'url = "{served.url}"\nsize = {served.size}\nsha256 = "{served.sha256.upper()}"\n')

    corpus = load_corpus("hamlet")

    assert corpus.name == "hamlet" and not corpus.documents
    assert "".join(corpus.train["text"]) + "".join(corpus.valid["text"]) == TEXT


@pytest.mark.parametrize(
    "body,said",
    [
        ('url = "https://example.com/a.txt"\nsize = 3\n', "a 'url' needs the file's 'size' .* and 'sha256'"),
        (f'path = "a.txt"\nsha256 = "{"0" * 64}"\n', "'sha256' is the check of a download and goes with 'url'"),
        (f'url = "https://example.com/a.txt"\nsize = "3"\nsha256 = "{"0" * 64}"\n', "'size' must be a whole number"),
        (f'url = "https://example.com/a.txt"\nsize = 3\nsha256 = "{"0" * 63}"\n', "'sha256' must be .* 64 hexadecimal"),
        (f'url = "ftp://example.com/a.txt"\nsize = 3\nsha256 = "{"0" * 64}"\n', "'url' must be an https, http, file"),
        (f'url = "https://example.com/"\nsize = 3\nsha256 = "{"0" * 64}"\n', "'url' must be an .* URL of a file"),
    ],
)
def test_a_card_with_a_bad_download_is_refused_before_anything_is_fetched(tmp_path, online, body, said):
    write_card(tmp_path, "bad", body)

    with pytest.raises(TextlstmError, match=f"corpus card .*bad.toml.*{said}"):
        load_corpus("bad")


# ---------------------------------------------------------------- tiny Shakespeare


def test_tinyshakespeare_card_reads_its_checked_download_from_the_cache(cached_tinyshakespeare):
    by_card = load_corpus("tinyshakespeare")

    assert by_card.name == "tinyshakespeare"
    assert by_card.fingerprint == load_corpus(str(TINYSHAKESPEARE)).fingerprint


def test_tinyshakespeare_offline_and_not_downloaded_is_one_line_saying_what_to_download_and_where(run_cli, tmp_path):
    result = run_cli("train", "--dataset", "tinyshakespeare", "--max-steps", "1")

    url = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
    where = tmp_path / "textlstm-cache" / "downloads" / "tinyshakespeare" / "input.txt"
    assert result.code != 0
    assert result.err == (
        "error: corpus card 'tinyshakespeare' needs a file that is not downloaded yet, and HF_HUB_OFFLINE is set: "
        f"download {url} and save it as {where}\n"
    )
