"""Checkpoints named hf://USER/NAME[@REVISION], read offline from the Hub's cache by every command
that takes a checkpoint.

The commands that touch the Hub run in subprocesses: huggingface_hub reads HF_HUB_OFFLINE and its
cache folder once, at import. The cache is laid out by hand as huggingface_hub's file_download.py
writes it, and huggingface_hub.scan_cache_dir() must see it so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, scan_cache_dir

from conftest import TINY_CORPUS, write_tiny_checkpoint
from textlstm.runs import checkpoint as ckpt
from textlstm.runs import hub
from textlstm.runs.model_card import write_model_card

WAIT = 120  # seconds: a bound on every wait, never reached when things work
GREEDY = ("--temperature", "0", "--max-tokens", "40")


def commit_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def lay_out_in_hub_cache(cache: Path, repo_id: str, snapshots: dict[str, Path], refs: dict[str, str]) -> Path:
    """Put run folders in the Hub's cache as downloads leave them: models--USER--NAME/blobs/<hash>
    holds each file, snapshots/<commit>/<name> links to its blob, refs/<ref> holds a commit hash.
    snapshots: commit -> the folder whose files it holds; refs: ref name -> commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for commit, folder in snapshots.items():
        for name in hub.LOAD_FILES + [ckpt.MODEL_CARD]:
            if not (folder / name).is_file():
                continue
            content = (folder / name).read_bytes()
            blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content)
            link = repo / "snapshots" / commit / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    for ref, commit in refs.items():
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo


def textlstm(*args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "textlstm", *map(str, args)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def cached_repo(tmp_path, offline_env) -> dict:
    """alice/tiny in the Hub's cache: main at one commit, the tag v1 at another with other weights,
    each a copy of a local folder. Returns the folders and commits."""
    main_run = write_tiny_checkpoint(tmp_path / "main-run")
    v1_run = write_tiny_checkpoint(tmp_path / "v1-run", bias={"Q": 50})  # writes Q after Q
    for run in (main_run, v1_run):
        write_model_card(run)
    main_commit, v1_commit = commit_hash("main"), commit_hash("v1")
    cache = Path(offline_env["HF_HUB_CACHE"])
    lay_out_in_hub_cache(
        cache, "alice/tiny", {main_commit: main_run, v1_commit: v1_run}, {"main": main_commit, "v1": v1_commit}
    )
    (tmp_path / "tiny.txt").write_text(TINY_CORPUS * 20)
    return {"main": main_run, "v1": v1_run, "main_commit": main_commit, "v1_commit": v1_commit, "cache": cache}


def test_the_laid_out_cache_is_what_huggingface_hub_sees(cached_repo):
    scanned = scan_cache_dir(cached_repo["cache"])
    assert scanned.warnings == []
    (repo,) = scanned.repos
    assert repo.repo_id == "alice/tiny" and repo.repo_type == "model"
    assert {ref: revision.commit_hash for ref, revision in repo.refs.items()} == {
        "main": cached_repo["main_commit"],
        "v1": cached_repo["v1_commit"],
    }


# --- loading by id ---------------------------------------------------------------------------------


def test_generate_from_the_cache_writes_what_the_local_folder_writes(cached_repo, offline_env, tmp_path, run_cli):
    local = {
        name: run_cli("generate", "--checkpoint", cached_repo[name], "--prompt", "Q", *GREEDY).out
        for name in ("main", "v1")
    }
    assert local["main"] != local["v1"]
    for given, expected in (
        ("hf://alice/tiny", "main"),
        ("hf://alice/tiny@main", "main"),
        ("hf://alice/tiny@v1", "v1"),
        (f"hf://alice/tiny@{cached_repo['v1_commit']}", "v1"),
    ):
        result = textlstm("generate", "--checkpoint", given, "--prompt", "Q", *GREEDY, env=offline_env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == local[expected], given


def test_info_and_eval_read_a_model_from_the_cache(cached_repo, offline_env, tmp_path, run_cli):
    info = textlstm("info", "hf://alice/tiny", "--json", env=offline_env, cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["checkpoint"].endswith(f"models--alice--tiny/snapshots/{cached_repo['main_commit']}")
    assert details["parameters"] == json.loads(run_cli("info", cached_repo["main"], "--json").out)["parameters"]

    scored = textlstm(
        "eval", "--checkpoint", "hf://alice/tiny@v1", "--dataset", "tiny.txt", "--json", env=offline_env, cwd=tmp_path
    )
    assert scored.returncode == 0, scored.stderr
    local = run_cli("eval", "--checkpoint", cached_repo["v1"], "--dataset", tmp_path / "tiny.txt", "--json")
    assert json.loads(scored.stdout)["loss"] == pytest.approx(json.loads(local.out)["loss"])


def test_serve_names_a_model_from_the_cache_by_its_id(cached_repo, offline_env, tmp_path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    process = subprocess.Popen(
        [sys.executable, "-m", "textlstm", "serve", "--checkpoint", "hf://alice/tiny", "--port", "0"],
        env=offline_env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = iter(process.stderr.readline, "")
        serving = next((line for line in lines if line.startswith("serving ")), "")  # once the model is loaded
        assert serving.startswith("serving alice/tiny on "), serving
        url = re.search(r"on (http://\S+) ", serving).group(1)
        models = httpx.get(f"{url}/v1/models", timeout=WAIT).json()
        assert [model["id"] for model in models["data"]] == ["alice/tiny"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0
    finally:
        process.kill()
        process.wait()


def test_init_from_a_model_in_the_cache_fine_tunes_it_and_names_it_the_base_model(cached_repo, offline_env, tmp_path):
    result = textlstm(
        "train",
        "--dataset",
        "tiny.txt",
        "--init-from",
        "hf://alice/tiny",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--max-steps",
        "2",
        "--output",
        "tuned",
        env=offline_env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "tuned" / ckpt.CONFIG).read_text())
    assert config["train"]["init_from"].endswith(f"models--alice--tiny/snapshots/{cached_repo['main_commit']}")
    card = ModelCard.load(tmp_path / "tuned" / ckpt.MODEL_CARD, ignore_metadata_errors=False)
    assert card.data.base_model == "alice/tiny"
    assert "Fine-tuned from hf://alice/tiny." in card.text
    # The same command typed again with --resume (the config holds the snapshot folder the id named).
    resumed = textlstm(
        "train",
        "--dataset",
        "tiny.txt",
        "--init-from",
        "hf://alice/tiny",
        "--batch-size",
        "2",
        "--seq-len",
        "16",
        "--max-steps",
        "3",
        "--output",
        "tuned",
        "--resume",
        "tuned",
        env=offline_env,
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr


@pytest.mark.parametrize(
    "given,expected",
    [
        ("hf://alice/missing", "hf://alice/missing is not in the Hugging Face cache"),
        ("hf://alice/tiny@v9", "hf://alice/tiny@v9 is not in the Hugging Face cache"),
        ("hf://alice/bad--name", "is not a Hub model id"),
        ("hf://alice/tiny@", "no revision after '@'"),
    ],
)
def test_a_model_the_cache_lacks_offline_is_one_error_line(cached_repo, offline_env, tmp_path, given, expected):
    assert expected in one_error_line(
        textlstm("generate", "--checkpoint", given, "--prompt", "Q", env=offline_env, cwd=tmp_path)
    )


def test_loading_by_id_downloads_json_and_safetensors_only():
    assert ckpt.TRAINER_STATE not in hub.LOAD_FILES
    assert all(name.endswith((".json", ".jsonl", ".safetensors")) for name in hub.LOAD_FILES)
