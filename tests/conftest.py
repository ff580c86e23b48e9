"""Shared test set-up: offline, with every cache in the test's own temporary folder."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Before torch, datasets or huggingface_hub are imported (they read these once, at import), and
# inherited by the subprocesses tests start: no network, no writes to the user's caches, and one
# thread (the tests' models are tiny, and two threads on a busy 2-core machine are far slower).
_SESSION_HOME = tempfile.mkdtemp(prefix="textlstm-tests-")
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_HOME=os.path.join(_SESSION_HOME, "hf"),
    HF_DATASETS_CACHE=os.path.join(_SESSION_HOME, "hf", "datasets"),
    TEXTLSTM_CACHE=os.path.join(_SESSION_HOME, "textlstm-cache"),
    OMP_NUM_THREADS="1",
)

import datasets  # noqa: E402
import huggingface_hub.constants  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from textlstm.data.corpora import download  # noqa: E402
from textlstm.training.trainer import Reporter  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPORA = REPO.parent / "shared" / "corpora"
TINYSHAKESPEARE = SHARED_CORPORA / "tinyshakespeare" / "input.txt"
SMALL_VOCAB = 30  # the vocabulary of small_model


def small_model(**overrides):
    """A small LSTMLanguageModel (2 x 12, embedding 8, no dropout), seeded, with ModelConfig overrides."""
    from textlstm.config import ModelConfig
    from textlstm.model.network import LSTMLanguageModel

    torch.manual_seed(0)
    settings = dict(
        vocab_size=SMALL_VOCAB, embedding_size=8, hidden_size=12, layers=2, dropout=0.0, recurrent_dropout=0.0
    )
    return LSTMLanguageModel(ModelConfig(**settings | overrides))


@pytest.fixture(autouse=True)
def offline_and_isolated(tmp_path, monkeypatch) -> Path:
    """Offline, every cache under tmp_path, and a cwd whose checkpoints/ is the test's own.

    Returns the datasets cache folder. datasets and huggingface_hub keep copies of their settings
    made at import, so those are patched as well as the environment.
    """
    home = tmp_path / "hf-home"
    cache = home / "datasets"
    for variable, value in {
        "HF_HOME": str(home),
        "HF_DATASETS_CACHE": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TEXTLSTM_CACHE": str(tmp_path / "textlstm-cache"),
    }.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture(autouse=True)
def downloads_read_local_files_only(monkeypatch):
    """A corpus card's download may open file:// URLs only: one that would reach the network fails the test."""
    open_url = download.open_url

    def local_only(url: str):
        if not url.startswith("file:"):
            raise AssertionError(f"a test tried to download {url}")
        return open_url(url)

    monkeypatch.setattr(download, "open_url", local_only)


@pytest.fixture
def cached_tinyshakespeare(offline_and_isolated) -> Path:
    """The tiny Shakespeare card's download in the test's cache, where the card looks for it: a copy of
    ../shared/corpora/tinyshakespeare/input.txt, as if downloaded once before."""
    from textlstm.data.corpora.cards import card_download, find_card, read_card

    if not TINYSHAKESPEARE.is_file():
        pytest.skip(f"{TINYSHAKESPEARE} not found (the shared corpora sit beside the repo)")
    card = find_card("tinyshakespeare")
    path = card_download(card, read_card(card)).path
    path.parent.mkdir(parents=True)
    shutil.copyfile(TINYSHAKESPEARE, path)
    return path


@pytest.fixture
def shakespeare_text() -> str:
    if not TINYSHAKESPEARE.is_file():
        pytest.skip(f"{TINYSHAKESPEARE} not found (the shared corpora sit beside the repo)")
    return TINYSHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture
def small_corpus(tmp_path, shakespeare_text) -> Path:
    """About 40 KB of real English text in a .txt file."""
    path = tmp_path / "data" / "small.txt"
    path.parent.mkdir()
    path.write_text(shakespeare_text[:40_000], encoding="utf-8")
    return path


# The corpus of the evaluation tests (test_evaluate.py, test_dynamic_eval.py).
TRAIN_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 12
VALID_TEXT = (
    "MENENIUS:\nWhat work's, my countrymen, in hand? where go you\n"
    "With bats and clubs? The matter? speak, I pray you.\n\n"
    "First Citizen:\nOur business is not unknown to the senate; they have had inkling this fortnight what we intend.\n"
) * 6


@pytest.fixture
def folder_corpus(tmp_path) -> Path:
    """A corpus folder with train and validation files: the validation text is exactly VALID_TEXT."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "train.txt").write_text(TRAIN_TEXT, encoding="utf-8")
    (folder / "validation.txt").write_text(VALID_TEXT, encoding="utf-8")
    return folder


@pytest.fixture
def offline_env(tmp_path) -> dict:
    """The environment of a subprocess: offline, its own empty Hub cache and token file, no token."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    return {
        **env,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys):
    """Run `textlstm ARGS...` in this process, the way the console script does."""
    from textlstm.cli.main import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


TINY_MODEL = ("--embedding-size", "16", "--hidden-size", "32", "--layers", "2", "--batch-size", "4", "--seq-len", "32")


class MessageLog(Reporter):
    """A training reporter that keeps the messages it is told, in `said`."""

    def __init__(self):
        self.said: list[str] = []

    def message(self, text: str) -> None:
        self.said.append(text)


def pytest_report_header(config):
    corpora = SHARED_CORPORA if SHARED_CORPORA.is_dir() else "missing"
    return f"textlstm tests; shared corpora: {corpora}; python {sys.version.split()[0]}"


TINY_CORPUS = "the quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!\n"


def tiny_char_model(bias: dict[str, float] | None = None, allow_newline: bool = False):
    """An untrained char model with well-separated logits that writes plain characters: never a byte
    token or end of text, and no newline unless `allow_newline`; `bias` sets chosen tokens' output
    bias. Returns (model in eval mode, tokenizer, RunConfig)."""
    from textlstm.config import DataConfig, ModelConfig, RunConfig
    from textlstm.data.tokenizer import build_tokenizer
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.tokens import EOT_ID

    tokenizer = build_tokenizer("char", [TINY_CORPUS])
    config = RunConfig(
        model=ModelConfig(
            tokenizer.vocab_size, embedding_size=16, hidden_size=32, layers=2, dropout=0.1, recurrent_dropout=0.1
        ),
        data=DataConfig(tokenizer="char"),
    )
    torch.manual_seed(0)
    model = LSTMLanguageModel(config.model)
    with torch.no_grad():
        model.decoder.weight.mul_(20)
        for byte in range(256):
            model.decoder.bias[tokenizer.hf.token_to_id(f"<0x{byte:02X}>")] = -30
        model.decoder.bias[EOT_ID] = -30
        if not allow_newline:
            model.decoder.bias[tokenizer.hf.token_to_id("\n")] = -30
        for text, value in (bias or {}).items():
            model.decoder.bias[tokenizer.hf.token_to_id(text)] = value
    return model.eval(), tokenizer, config


def write_tiny_checkpoint(folder: Path, **model_options) -> Path:
    """A checkpoint folder holding `tiny_char_model(**model_options)`."""
    from textlstm.fileio import write_text
    from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, save_weights

    model, tokenizer, config = tiny_char_model(**model_options)
    folder.mkdir(parents=True)
    write_text(folder / CONFIG, config.to_json())
    tokenizer.save(folder / TOKENIZER)
    save_weights(model, folder / BEST_WEIGHTS, step=0)
    return folder
