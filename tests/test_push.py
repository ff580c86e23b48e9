"""`textlstm push`: what it uploads, and one error line when it cannot reach the Hub (offline, no
token, no network), in subprocesses that never leave the machine."""

from __future__ import annotations

import socket

import pytest

from conftest import write_tiny_checkpoint
from test_hub import one_error_line, textlstm
from textlstm.errors import TextlstmError
from textlstm.runs import checkpoint as ckpt
from textlstm.runs import hub
from textlstm.runs.model_card import write_model_card


def test_push_uploads_what_a_user_needs_and_the_trainer_state_only_when_asked(tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run")
    write_model_card(run)
    (run / ckpt.METRICS).write_text("")
    (run / ckpt.TRAINER_STATE).write_bytes(b"state")
    (run / "notes.txt").write_text("mine")
    assert hub.files_to_push(run) == [
        "README.md",
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        "metrics.jsonl",
    ]
    assert hub.files_to_push(run, with_state=True)[-1] == ckpt.TRAINER_STATE

    (run / ckpt.MODEL_CARD).unlink()
    with pytest.raises(TextlstmError, match="has no README.md"):
        hub.files_to_push(run)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("case", ["offline", "no token", "no network"])
def test_push_that_cannot_reach_the_hub_is_one_error_line(tmp_path, offline_env, case):
    run = write_tiny_checkpoint(tmp_path / "run")
    env = {**offline_env, "HF_TOKEN": "hf_not_a_real_token"}
    if case == "no token":
        del env["HF_TOKEN"]
    if case == "no network":  # a local port nothing listens on: the connection is refused at once
        env.update(HF_HUB_OFFLINE="0", HF_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    line = one_error_line(textlstm("push", run, "--repo", "alice/tiny", env=env, cwd=tmp_path))
    expected = {
        "offline": "HF_HUB_OFFLINE=1 keeps the Hub out of reach",
        "no token": "not logged in to the Hugging Face Hub",
        "no network": "cannot push to alice/tiny: the Hub cannot be reached",
    }[case]
    assert expected in line


@pytest.mark.parametrize("repo", ["alice", "alice/tiny/more", "alice/bad--name"])
def test_push_refuses_a_repository_that_is_not_user_slash_name(run_cli, tmp_path, repo):
    result = run_cli("push", write_tiny_checkpoint(tmp_path / "run"), "--repo", repo)
    assert result.code == 1 and result.err.startswith("error: ") and result.err.count("\n") == 1
