"""`textlstm plot`: training curves of several runs in one picture."""

import json
import sys

import numpy as np
import pytest

from conftest import write_tiny_checkpoint


def run_with_metrics(folder, final_loss: float):
    """A checkpoint folder whose metrics.jsonl holds ten evaluations falling to `final_loss`."""
    write_tiny_checkpoint(folder)
    records = []
    for i in range(1, 11):
        loss = final_loss + 3.0 / i
        records.append(
            {
                "step": 50 * i,
                "train_loss": loss + 0.1,
                "valid_loss": loss,
                "valid_bits_per_char": loss / 0.693,
                "elapsed_sec": 30.0 * i,
                "final": i == 10,
            }
        )
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def pixels_of(image: np.ndarray, hex_color: str) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(image[..., :3] - rgb).max(axis=-1) < 0.02).sum())


def test_plot_draws_every_run_into_a_png(run_cli, tmp_path):
    image_module = pytest.importorskip("matplotlib.image")
    run_with_metrics(tmp_path / "checkpoints" / "first", 1.5)
    run_with_metrics(tmp_path / "second", 1.2)

    result = run_cli(
        "plot", "first", tmp_path / "second", "-o", tmp_path / "curves.png"
    )  # a name under checkpoints/, a folder
    assert result.code == 0, result.err
    image = image_module.imread(tmp_path / "curves.png")
    assert image.shape[0] >= 600 and image.shape[1] >= 900
    # each run has its own colour (matplotlib's first two: C0 blue, C1 orange), in all four panels
    assert pixels_of(image, "#1f77b4") > 500 and pixels_of(image, "#ff7f0e") > 500


def test_plot_without_matplotlib_says_how_to_install_it(run_cli, tmp_path, monkeypatch):
    run_with_metrics(tmp_path / "run", 1.5)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run_cli("plot", tmp_path / "run", "-o", tmp_path / "curves.png")
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        'error: plotting needs matplotlib: pip install "textlstm[plot]" (or pip install matplotlib)'
    ]
    assert not (tmp_path / "curves.png").exists()


def test_plot_refuses_a_run_without_evaluations_and_an_unknown_run(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    write_tiny_checkpoint(tmp_path / "untrained")
    for args, expected in (((tmp_path / "untrained",), "has no evaluations yet"), (("nosuchrun",), "no run nosuchrun")):
        result = run_cli("plot", *args, "-o", tmp_path / "curves.png")
        assert result.code == 1 and expected in result.err and result.err.count("\n") == 1, result.err
