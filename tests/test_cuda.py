"""On a CUDA GPU: training in each precision, `auto`'s choice, resume of the loss scale, evaluation
and generation. Marked `cuda` and skipped without a GPU; benchmarks/speed/gpu_check.sh runs them.

They train on the built-in corpus, so they need no files beside the repository.
"""

import json
import math

import pytest
import torch

from conftest import TINY_MODEL, write_tiny_checkpoint
from textlstm.runs.checkpoint import load_checkpoint, load_trainer_state, save_trainer_state

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]

ON_CUDA = (*TINY_MODEL, "--eval-tokens", "4000", "--lr", "0.01", "--seed", "3", "--device", "cuda")


def metric_records(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_training_on_cuda_in_each_precision_lands_close_to_float32(run_cli, tmp_path):
    for precision in ("float32", "bfloat16", "float16"):
        result = run_cli(
            "train",
            *ON_CUDA,
            "--max-steps",
            "40",
            "--eval-every",
            "20",
            "--precision",
            precision,
            "--output",
            tmp_path / precision,
        )
        assert result.code == 0, result.err
        records = metric_records(tmp_path / precision)
        assert [r["step"] for r in records] == [20, 40]
        assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["valid_loss"]) for r in records), precision
        state = load_trainer_state(tmp_path / precision / "trainer_state.pt")
        assert bool(state["loss_scaler"]) == (precision == "float16")
    float32 = metric_records(tmp_path / "float32")[-1]["valid_loss"]
    for precision in ("bfloat16", "float16"):
        assert metric_records(tmp_path / precision)[-1]["valid_loss"] == pytest.approx(float32, rel=0.03), precision
    model, _, _ = load_checkpoint(tmp_path / "float16")  # saved from the GPU, read on the CPU
    assert model.embedding.weight.device.type == "cpu"


def test_auto_precision_on_cuda_scales_the_loss_only_without_native_bfloat16(run_cli, tmp_path):
    from textlstm.hardware.precision import cuda_has_native_bfloat16, training_precision

    native = cuda_has_native_bfloat16(torch.device("cuda"))
    assert training_precision("auto", "cuda") == ("bfloat16" if native else "float16")
    result = run_cli("train", *ON_CUDA, "--max-steps", "4", "--output", tmp_path / "run")
    assert result.code == 0, result.err
    assert bool(load_trainer_state(tmp_path / "run" / "trainer_state.pt")["loss_scaler"]) == (not native)


def test_resume_on_cuda_goes_on_with_the_loss_scale(run_cli, tmp_path):
    out = tmp_path / "run"
    assert run_cli("train", *ON_CUDA, "--precision", "float16", "--max-steps", "4", "--output", out).code == 0
    state = load_trainer_state(out / "trainer_state.pt")
    state["loss_scaler"] |= {"scale": 1024.0, "_growth_tracker": 7}
    save_trainer_state(state, out / "trainer_state.pt")
    result = run_cli("train", "--resume", out, "--max-steps", "6")
    assert result.code == 0, result.err
    scaler = load_trainer_state(out / "trainer_state.pt")["loss_scaler"]
    assert (scaler["scale"], scaler["_growth_tracker"]) == (1024.0, 9)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_the_adaptive_softmax_trains_on_cuda_in_half_precision(run_cli, tmp_path, precision):
    result = run_cli(
        "train",
        *ON_CUDA,
        "--output-layer",
        "adaptive",
        "--tokenizer",
        "char",
        "--precision",
        precision,
        "--max-steps",
        "4",
        "--output",
        tmp_path / "run",
    )
    assert result.code == 0, result.err


def test_evaluation_on_cuda_matches_the_cpu_in_each_precision():
    from textlstm.config import ModelConfig
    from textlstm.evaluation.scoring import evaluate_split
    from textlstm.model.network import LSTMLanguageModel

    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(vocab_size=40, embedding_size=16, hidden_size=32, layers=2))
    ids = torch.randint(2, 40, (3000,)).numpy()
    on_cpu = evaluate_split(model, ids, batch_size=4, seq_len=64)
    model.to("cuda")
    for precision in ("float32", "bfloat16", "float16"):
        on_cuda = evaluate_split(model, ids, batch_size=4, seq_len=64, device="cuda", precision=precision)
        assert on_cuda.tokens == on_cpu.tokens
        assert on_cuda.loss == pytest.approx(on_cpu.loss, rel=1e-4 if precision == "float32" else 0.01), precision


def test_generation_on_cuda_in_each_precision(run_cli, tmp_path):
    from textlstm.generation.generator import load

    folder = write_tiny_checkpoint(tmp_path / "tiny")
    on_cpu = load(folder).generate("the ", max_tokens=20, temperature=0)
    for precision in ("float32", "bfloat16", "float16"):
        lm = load(folder, device="cuda", precision=precision)
        assert lm.model.embedding.weight.device.type == "cuda"
        greedy = lm.generate("the ", max_tokens=20, temperature=0)
        if precision == "float32":
            assert greedy == on_cpu
        else:  # rounded weights may choose other characters, as many
            assert len(greedy) == len(on_cpu), precision
        assert len(lm.generate("the ", max_tokens=20, seed=1)) > 0
    for precision in ("float32", "bfloat16"):  # the command's choices
        result = run_cli(
            "generate",
            "--checkpoint",
            folder,
            "--device",
            "cuda",
            "--precision",
            precision,
            "--prompt",
            "the ",
            "--max-tokens",
            "20",
            "--seed",
            "1",
        )
        assert result.code == 0, result.err
        assert result.out.startswith("the ") and len(result.out) > len("the ")


def test_the_planner_times_the_shapes_on_cuda_and_the_run_uses_its_budget(run_cli, tmp_path):
    """A GPU trains far faster than the CPU this project was tuned on: the plan must come from the
    GPU's own measured rate (more tokens, so a larger shape or more dropout than on a CPU)."""
    out = tmp_path / "planned"
    result = run_cli("train", "--device", "cuda", "--max-minutes", "0.5", "--output", out)
    assert result.code == 0, result.err
    assert "measured in " in result.err and "tokens/s" in result.err
    saved = json.loads((out / "config.json").read_text())
    assert saved["plan"]["tokens_per_sec"] and saved["model"]["hidden_size"] == saved["plan"]["chosen"][1]
    elapsed = metric_records(out)[-1]["elapsed_sec"]
    assert elapsed >= 0.9 * 30 or "stopped early" in result.err
