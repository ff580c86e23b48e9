"""Atomic writes: the real name holds the old file or the new one, and new files get the usual mode."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from safetensors.torch import save_model

from textlstm.fileio import atomic_write, write_text


@pytest.fixture
def umask():
    """Set a umask for the test; restore the old one after."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)], ids=["022", "077", "002"])
def test_new_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_text(tmp_path / "config.json", "{}")
    atomic_write(tmp_path / "state.pt", lambda tmp: torch.save({"step": 1}, tmp))
    # safetensors creates its file anew with mode 0600, whatever the umask
    atomic_write(tmp_path / "model.safetensors", lambda tmp: save_model(torch.nn.Linear(2, 2), str(tmp)))
    for name in ("config.json", "state.pt", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "config.json"
    write_text(path, "old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
