"""float16: training with a scaled loss (on the CPU here, the path a CUDA GPU without bfloat16 takes),
evaluation and sampling; and which precision `auto` picks on a CUDA GPU."""

import json
import math

import pytest
import torch

from conftest import TINY_MODEL, MessageLog
from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.runs.checkpoint import load_trainer_state, save_trainer_state

INITIAL_SCALE = 2.0**16  # torch.amp.GradScaler's


def config(corpus, **train) -> RunConfig:
    settings = dict(
        batch_size=4,
        seq_len=32,
        max_steps=8,
        eval_every=100,
        schedule="constant",
        warmup_steps=2,
        seed=3,
        precision="float16",
    )
    return RunConfig(
        model=ModelConfig(embedding_size=16, hidden_size=32, layers=2, dropout=0.1, recurrent_dropout=0.1),
        data=DataConfig(dataset=str(corpus)),
        train=TrainConfig(**settings | train),
    )


def metric_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_float16_training_has_finite_losses_close_to_float32_and_a_working_checkpoint(run_cli, small_corpus, tmp_path):
    steps = ("--max-steps", "30", "--eval-every", "15", "--lr", "0.01", "--seed", "3")
    for precision in ("float32", "float16"):
        result = run_cli(
            "train",
            "--dataset",
            small_corpus,
            *TINY_MODEL,
            *steps,
            "--precision",
            precision,
            "--output",
            tmp_path / precision,
        )
        assert result.code == 0, result.err
    records = metric_records(tmp_path / "float16")
    assert [r["step"] for r in records] == [15, 30]
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["valid_loss"]) for r in records)
    float32 = metric_records(tmp_path / "float32")[-1]["valid_loss"]
    assert float32 < 3.5  # it learned something, so "close" means something
    assert records[-1]["valid_loss"] == pytest.approx(float32, rel=0.03)
    assert json.loads((tmp_path / "float16" / "config.json").read_text())["train"]["precision"] == "float16"
    assert load_trainer_state(tmp_path / "float16" / "trainer_state.pt")["loss_scaler"]["scale"] > 0
    result = run_cli(
        "generate", "--checkpoint", tmp_path / "float16", "--prompt", "To be", "--max-tokens", "20", "--seed", "1"
    )
    assert result.code == 0, result.err
    assert result.out.startswith("To be") and len(result.out) > len("To be")


def test_resume_continues_the_loss_scale_exactly(small_corpus, tmp_path):
    """8 steps in one run, and 4 then 4 more resumed: the same weights and the same scaler state
    (its count of steps since the scale last changed included, which a new scaler would restart)."""
    from textlstm.training.trainer import train

    train(config(small_corpus), output=tmp_path / "once")
    train(config(small_corpus, max_steps=4), output=tmp_path / "twice")
    halfway = load_trainer_state(tmp_path / "twice" / "trainer_state.pt")["loss_scaler"]
    assert halfway["scale"] == INITIAL_SCALE and halfway["_growth_tracker"] == 4
    resumed = train(resume=tmp_path / "twice", train_overrides={"max_steps": 8})
    assert resumed.steps == 8
    once, twice = (load_trainer_state(tmp_path / name / "trainer_state.pt") for name in ("once", "twice"))
    assert twice["loss_scaler"] == once["loss_scaler"] and once["loss_scaler"]["_growth_tracker"] == 8
    for name, weight in once["model"].items():
        assert torch.equal(twice["model"][name], weight), name


def test_resume_goes_on_from_the_saved_scale(small_corpus, tmp_path):
    from textlstm.training.trainer import train

    out = tmp_path / "run"
    train(config(small_corpus, max_steps=3), output=out)
    state = load_trainer_state(out / "trainer_state.pt")
    state["loss_scaler"] |= {"scale": 1024.0, "_growth_tracker": 7}
    save_trainer_state(state, out / "trainer_state.pt")
    train(resume=out, train_overrides={"max_steps": 5})
    scaler = load_trainer_state(out / "trainer_state.pt")["loss_scaler"]
    assert (scaler["scale"], scaler["_growth_tracker"]) == (1024.0, 9)


def test_a_float32_run_resumed_in_float16_starts_a_new_scale(small_corpus, tmp_path):
    from textlstm.training.trainer import train

    out = tmp_path / "run"
    train(config(small_corpus, max_steps=3, precision="float32"), output=out)
    assert load_trainer_state(out / "trainer_state.pt")["loss_scaler"] == {}
    train(resume=out, train_overrides={"max_steps": 5, "precision": "float16"})
    scaler = load_trainer_state(out / "trainer_state.pt")["loss_scaler"]
    assert (scaler["scale"], scaler["_growth_tracker"]) == (INITIAL_SCALE, 2)


def test_overflowing_gradients_skip_the_step_without_counting_as_bad_steps(small_corpus, tmp_path, monkeypatch):
    """Steps 2 to 8 (more in a row than MAX_BAD_STEPS) get inf gradients from a finite loss: each is
    skipped by the scaler, which halves the scale; the weights, the optimizer and the weight average
    stay as they were, nothing is reported, and the run trains on to its last step."""
    from textlstm.model.network import LSTMLanguageModel
    from textlstm.training.trainer import MAX_BAD_STEPS, train

    overflowing = range(2, 9)
    assert len(overflowing) > MAX_BAD_STEPS
    weights = []
    real_loss = LSTMLanguageModel.loss

    def gradient_overflows(self, ids, targets, state=None, lengths=None):
        total, count, new_state = real_loss(self, ids, targets, state, lengths)
        if self.training:
            weights.append([p.detach().clone() for p in self.parameters()])
            if len(weights) in overflowing:  # the same value, a gradient 1e38 times larger: inf once scaled
                total = total + (total - total.detach()) * 1e38
        return total, count, new_state

    monkeypatch.setattr(LSTMLanguageModel, "loss", gradient_overflows)
    result = train(
        config(small_corpus, max_steps=10, ema=0.9, ar=0.0, tar=0.0),
        output=tmp_path / "run",
        reporter=(messages := MessageLog()),
    )
    assert result.steps == 10 and len(weights) == 10
    assert not any("skipped" in text for text in messages.said)
    for step in overflowing:  # weights[n] are those step n + 1 starts from
        assert all(torch.equal(before, after) for before, after in zip(weights[step - 1], weights[step]))
    assert not all(torch.equal(before, after) for before, after in zip(weights[8], weights[9]))  # step 9 updated them
    state = load_trainer_state(tmp_path / "run" / "trainer_state.pt")
    assert state["loss_scaler"]["scale"] == INITIAL_SCALE / 2 ** len(overflowing)
    updates = 10 - len(overflowing)
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {updates}
    assert state["average"]["updates"] == updates


def test_gradients_are_clipped_at_their_true_size(small_corpus, tmp_path, monkeypatch):
    """Clipping reads the gradients divided by the loss scale again: the norm it sees in float16 is
    float32's, not 65,536 times it."""
    from textlstm.training.trainer import train

    norms = {}
    real_clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        norms.setdefault(precision, float(real_clip(parameters, max_norm, *args, **kwargs)))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    for precision in ("float32", "float16"):
        train(config(small_corpus, max_steps=1, precision=precision), output=tmp_path / precision)
    assert norms["float16"] == pytest.approx(norms["float32"], rel=0.02)


def test_float16_weights_generate(tmp_path):
    from conftest import write_tiny_checkpoint
    from textlstm.generation.generator import load

    folder = write_tiny_checkpoint(tmp_path / "tiny")
    lm = load(folder, precision="float16")
    assert lm.model.embedding.weight.dtype == torch.float16
    assert lm.generate("the ", max_tokens=20, temperature=0) == load(folder).generate(
        "the ", max_tokens=20, temperature=0
    )


def test_auto_precision_on_cuda_is_bfloat16_from_ampere_on_and_float16_before(monkeypatch):
    """A T4 (compute capability 7.5) emulates bfloat16, and torch.cuda.is_bf16_supported() says yes to it."""
    from textlstm.hardware import precision

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    for capability, expected in (((7, 5), "float16"), ((8, 0), "bfloat16"), ((9, 0), "bfloat16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, capability=capability: capability)
        assert precision.training_precision("auto", "cuda") == expected
        assert precision.training_precision("auto", "cuda:1") == expected
    assert precision.training_precision("float16", "cpu") == "float16"


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_the_adaptive_softmax_trains_in_half_precision(run_cli, small_corpus, tmp_path, precision):
    """pytorch/pytorch#44724: under autocast the adaptive softmax fails unless it runs in float32."""
    out = tmp_path / precision
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--tokenizer",
        "word",
        "--vocab-size",
        "300",
        "--output-layer",
        "adaptive",
        "--adaptive-cutoffs",
        "50,150",
        "--precision",
        precision,
        "--max-steps",
        "4",
        "--eval-every",
        "4",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    assert all(math.isfinite(r["valid_loss"]) for r in metric_records(out))
