"""bfloat16: training, evaluation and sampling run, and land close to float32."""

import json

import pytest
import torch

from conftest import TINY_MODEL
from textlstm.config import ModelConfig
from textlstm.evaluation.scoring import evaluate_split
from textlstm.model.network import LSTMLanguageModel

STEPS = ("--max-steps", "40", "--eval-every", "40", "--lr", "0.01", "--seed", "3")


def valid_loss(folder) -> float:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])["valid_loss"]


def test_bfloat16_training_lands_close_to_float32(run_cli, small_corpus, tmp_path):
    for precision in ("float32", "bfloat16"):
        result = run_cli(
            "train",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            *STEPS,
            "--precision",
            precision,
            "--output",
            tmp_path / precision,
        )
        assert result.code == 0, result.err
    float32, bfloat16 = valid_loss(tmp_path / "float32"), valid_loss(tmp_path / "bfloat16")
    assert float32 < 3.5  # it learned something, so "close" means something
    assert bfloat16 == pytest.approx(float32, rel=0.03)
    config = json.loads((tmp_path / "bfloat16" / "config.json").read_text())
    assert config["train"]["precision"] == "bfloat16"


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_half_precision_evaluation_matches_float32(precision):
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=40, embedding_size=16, hidden_size=32, layers=2))
    ids = torch.randint(2, 40, (3000,)).numpy()
    float32 = evaluate_split(model, ids, batch_size=4, seq_len=64)
    half = evaluate_split(model, ids, batch_size=4, seq_len=64, precision=precision)
    assert half.tokens == float32.tokens
    assert half.loss == pytest.approx(float32.loss, rel=0.01)


def test_generate_and_eval_accept_bfloat16(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "5", "--output", out).code == 0
    result = run_cli(
        "generate",
        "--checkpoint",
        out,
        "--prompt",
        "To be",
        "--max-tokens",
        "20",
        "--seed",
        "1",
        "--precision",
        "bfloat16",
    )
    assert result.code == 0, result.err
    assert result.out.startswith("To be") and len(result.out) > len("To be")
    result = run_cli("eval", "--checkpoint", out, "--precision", "bfloat16", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["loss"] > 0


def test_auto_precision_is_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    from textlstm.hardware import precision

    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda native=native: native)
        assert precision.training_precision("auto", "cpu") == expected
        assert precision.training_precision("float32", "cpu") == "float32"
        assert precision.training_precision("bfloat16", "cpu") == "bfloat16"


def test_bfloat16_autocast_runs_an_lstm_on_a_cpu_without_bfloat16_instructions(monkeypatch):
    """oneDNN has no bfloat16 LSTM for such a CPU (an AVX2-only EPYC failed every bfloat16 run with
    "could not create a primitive descriptor"): autocast turns it off there, and only there."""
    from textlstm.hardware import precision

    lstm = torch.nn.LSTM(8, 16, 2, batch_first=True)
    for native in (True, False):
        monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda native=native: native)
        with precision.autocast("bfloat16", "cpu"):
            assert torch.backends.mkldnn.enabled == (torch.backends.mkldnn.is_available() and native)
            if not native:
                output, _ = lstm(torch.randn(2, 5, 8))
                assert output.shape == (2, 5, 16) and bool(output.isfinite().all())
    assert torch.backends.mkldnn.enabled == torch.backends.mkldnn.is_available()
