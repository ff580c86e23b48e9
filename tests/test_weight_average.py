"""--ema: the averaged weights, what evaluations and model.safetensors use, and exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_MODEL
from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel
from textlstm.training.weight_average import WeightAverage


def test_the_average_follows_the_weights_with_a_warmed_up_decay():
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=20, embedding_size=4, hidden_size=6, layers=1))
    average = WeightAverage(model, decay=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    expected = start
    for update in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model)
        decay = min(0.5, (1 + update) / (10 + update))  # 0.1, 0.18, 0.25, 0.5 (capped)
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, model.parameters())]
    for averaged, wanted, trained in zip(average.model.parameters(), expected, model.parameters()):
        torch.testing.assert_close(averaged, wanted)
        assert not torch.equal(averaged, trained)
    assert average.updates == 4 and not any(p.requires_grad for p in average.model.parameters())


def train_args(corpus, *extra):
    return (
        "train",
        "--dataset",
        corpus,
        *TINY_MODEL,
        "--schedule",
        "constant",
        "--warmup-steps",
        "5",
        "--dropout",
        "0.2",
        "--seed",
        "7",
        "--precision",
        "float32",
        "--ema",
        "0.9",
        *extra,
    )


def test_evaluations_and_the_saved_weights_are_the_average(run_cli, small_corpus, tmp_path):
    from textlstm.evaluation.scoring import evaluate_checkpoint

    out = tmp_path / "run"
    result = run_cli(*train_args(small_corpus, "--max-steps", "8", "--eval-every", "8", "--output", out))
    assert result.code == 0, result.err
    state = torch.load(out / "trainer_state.pt", weights_only=True)
    best = load_file(out / "model.safetensors")
    assert state["average"]["updates"] == 8
    for name, averaged in state["average"]["weights"].items():
        torch.testing.assert_close(best[name], averaged)
    assert any(not torch.equal(best[name], state["model"][name]) for name in best)  # training went on with the raw ones
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert json.loads((out / "config.json").read_text())["train"]["ema"] == 0.9
    # The evaluation during training scored the averaged weights: the ones saved.
    assert evaluate_checkpoint(out).loss == pytest.approx(record["valid_loss"], abs=1e-5)


def test_resume_with_ema_is_exact(run_cli, small_corpus, tmp_path):
    common = train_args(small_corpus, "--eval-every", "100")
    assert run_cli(*common, "--max-steps", "30", "--output", tmp_path / "once").code == 0
    assert run_cli(*common, "--max-steps", "15", "--output", tmp_path / "twice").code == 0
    result = run_cli("train", "--resume", tmp_path / "twice", "--max-steps", "30")
    assert result.code == 0, result.err
    once = torch.load(tmp_path / "once" / "trainer_state.pt", weights_only=True)["average"]
    twice = torch.load(tmp_path / "twice" / "trainer_state.pt", weights_only=True)["average"]
    assert once["updates"] == twice["updates"] == 30
    for name, weight in once["weights"].items():
        torch.testing.assert_close(twice["weights"][name], weight, rtol=0, atol=1e-6)
    last = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1]) for run in ("once", "twice")]
    assert last[1]["valid_loss"] == pytest.approx(last[0]["valid_loss"], abs=1e-5)
