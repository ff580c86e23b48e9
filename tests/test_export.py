"""`textlstm export --format onnx`: the step graph computes what the model does, over the whole
vocabulary, and examples/onnx_generate.py writes what `textlstm generate --temperature 0` writes,
in a process where torch cannot be imported. With --quantize int8 the LSTM and output layer run in
int8 and the log-probabilities stay close to float32's."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_MODEL, write_tiny_checkpoint
from textlstm.config import DataConfig, ModelConfig, RunConfig
from textlstm.data.tokenizer import build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.fileio import write_text
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs import export as export_module
from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, load_checkpoint, save_weights
from textlstm.tokens import EOT_ID

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "onnx_generate.py"
EXPORTED = ["config.json", "model.onnx", "tokenizer.json"]

# Runs the example in a process where `import torch` fails, after showing that it does.
WITHOUT_TORCH = f"""
import runpy, sys
try:
    import torch
except ImportError as error:
    print(f"torch not importable: {{error}}", file=sys.stderr)
else:
    sys.exit("torch was imported")
runpy.run_path({str(EXAMPLE)!r}, run_name="__main__")
"""


@pytest.fixture
def ort():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


def write_checkpoint(folder: Path, tokenizer, kind: str, **model_settings) -> Path:
    """An untrained 2 x 32 model over `tokenizer`, saved as a checkpoint folder."""
    model_config = ModelConfig(
        tokenizer.vocab_size,
        embedding_size=16,
        hidden_size=32,
        layers=2,
        dropout=0.0,
        recurrent_dropout=0.0,
        **model_settings,
    )
    config = RunConfig(model=model_config, data=DataConfig(tokenizer=kind))
    torch.manual_seed(0)
    model = LSTMLanguageModel(config.model)
    folder.mkdir(parents=True)
    write_text(folder / CONFIG, config.to_json())
    tokenizer.save(folder / TOKENIZER)
    save_weights(model, folder / BEST_WEIGHTS, step=7)
    return folder


def run_graph(session, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> list[np.ndarray]:
    return session.run(["log_probs", "h_new", "c_new"], {"ids": ids.numpy(), "h": h.numpy(), "c": c.numpy()})


def run_example(folder: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """examples/onnx_generate.py FOLDER ARGS in a process whose `import torch` raises ImportError."""
    blocked = tmp_path / "no-torch"
    (blocked / "torch").mkdir(parents=True, exist_ok=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(folder), *args],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )


# char: the byte-fallback softmax (as training builds it); word: the full softmax; bpe: the adaptive softmax.
OUTPUT_LAYERS = {
    "char-byte-fallback": ("char", None, lambda tokenizer: dict(byte_fallback_start=tokenizer.byte_fallback_start)),
    "word-full": ("word", 400, lambda tokenizer: {}),
    "bpe-adaptive": ("bpe", 400, lambda tokenizer: dict(output_layer="adaptive", adaptive_cutoffs=[40, 150])),
}


@pytest.mark.parametrize("name", sorted(OUTPUT_LAYERS))
def test_onnxruntime_gives_the_log_probabilities_and_state_of_pytorch(ort, run_cli, shakespeare_text, tmp_path, name):
    kind, vocab_size, settings = OUTPUT_LAYERS[name]
    text = shakespeare_text[:20_000]
    tokenizer = build_tokenizer(kind, [text], vocab_size)
    run = write_checkpoint(tmp_path / "run", tokenizer, kind, **settings(tokenizer))
    result = run_cli("export", run, "--format", "onnx", "-o", tmp_path / "onnx")
    assert result.code == 0, result.err
    model, _, _ = load_checkpoint(run)
    assert (model.byte_softmax is not None, model.adaptive is not None) == (kind == "char", kind == "bpe")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))

    ids = torch.tensor(tokenizer.encode(text)[:1000]).reshape(2, 500)
    generator = torch.Generator().manual_seed(1)
    h, c = (torch.randn(2, 2, 32, generator=generator) * 0.5 for _ in range(2))
    log_probs, h_new, c_new = run_graph(session, ids, h, c)
    with torch.no_grad():
        logits, (expected_h, expected_c) = model(ids, (h, c))
    expected = F.log_softmax(logits, dim=-1)
    assert log_probs.shape == (2, 500, tokenizer.vocab_size) and log_probs.dtype == np.float32
    np.testing.assert_allclose(log_probs, expected.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(h_new, expected_h.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(c_new, expected_c.numpy(), rtol=0, atol=1e-4)
    # Normalized over the whole vocabulary, byte tokens and rare clusters included.
    np.testing.assert_allclose(np.log(np.exp(log_probs.astype(np.float64)).sum(-1)), 0, atol=1e-4)

    # A shorter second row padded at its end: its log-probabilities up to its length are its own.
    short = torch.cat([ids[1, :300], torch.zeros(200, dtype=torch.long)])
    padded_log_probs, _, _ = run_graph(session, torch.stack([ids[0], short]), h, c)
    with torch.no_grad():
        alone = F.log_softmax(model(ids[1:, :300], (h[:, 1:], c[:, 1:]))[0], dim=-1)
    np.testing.assert_allclose(padded_log_probs[1, :300], alone[0].numpy(), rtol=0, atol=1e-4)


def test_the_export_folder_holds_the_tokenizer_and_what_a_runner_needs(ort, run_cli, tmp_path):
    run = write_tiny_checkpoint(tmp_path / "checkpoints" / "tiny")
    result = run_cli("export", "tiny", "-o", tmp_path / "onnx")  # a run's name under checkpoints/
    assert result.code == 0, result.err
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == EXPORTED
    assert (tmp_path / "onnx" / "tokenizer.json").read_text() == (run / TOKENIZER).read_text()
    exported = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert exported["export"] == {
        "format": "onnx",
        "format_version": 1,
        "step": 0,
        "quantize": None,
        "pad_id": 0,
        "eot_id": 1,
        "vocab_size": exported["model"]["vocab_size"],
        "layers": 2,
        "hidden_size": 32,
        "inputs": ["ids", "h", "c"],
        "outputs": ["log_probs", "h_new", "c_new"],
    }
    assert RunConfig.from_json((tmp_path / "onnx" / "config.json").read_text()) == RunConfig.from_json(
        (run / CONFIG).read_text()
    )


def train_small_model(run_cli, small_corpus, run: Path) -> Path:
    """A 2 x 64 char model trained for 300 steps on small_corpus: its text is a trained model's, not one letter."""
    trained = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--hidden-size",
        "64",
        "--batch-size",
        "8",
        "--seq-len",
        "64",
        "--max-steps",
        "300",
        "--eval-every",
        "300",
        "--lr",
        "0.02",
        "--output",
        run,
    )
    assert trained.code == 0, trained.err
    return run


def test_greedy_text_from_onnx_is_the_text_of_generate(ort, run_cli, small_corpus, tmp_path):
    run = train_small_model(run_cli, small_corpus, tmp_path / "run")
    assert run_cli("export", run, "-o", tmp_path / "onnx").code == 0
    prompt = "ROMEO:"
    generated = run_cli(
        "generate",
        "--checkpoint",
        run,
        "--temperature",
        "0",
        "--prompt",
        prompt,
        "--max-tokens",
        "200",
        "--precision",
        "float32",
    )
    assert generated.code == 0, generated.err
    continuation = generated.out.removeprefix(prompt)
    assert len(continuation) > 100 and len(set(continuation)) > 5, (
        generated.out
    )  # a trained model's text, not one letter

    example = run_example(tmp_path / "onnx", tmp_path, "--prompt", prompt, "--max-tokens", "200")
    assert example.returncode == 0, example.stderr
    assert example.stdout == generated.out


def test_the_example_runs_where_torch_cannot_be_imported(ort, run_cli, tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run")
    assert run_cli("export", run, "-o", tmp_path / "onnx").code == 0
    prompt = "the é fox"  # é is not in the vocabulary: read as its UTF-8 bytes
    example = run_example(tmp_path / "onnx", tmp_path, "--prompt", prompt, "--max-tokens", "40")
    assert "torch not importable: torch is blocked in this test" in example.stderr
    assert example.returncode == 0, example.stderr
    generated = run_cli(
        "generate",
        "--checkpoint",
        run,
        "--temperature",
        "0",
        "--prompt",
        prompt,
        "--max-tokens",
        "40",
        "--precision",
        "float32",
    )
    assert example.stdout == generated.out and len(example.stdout) > len(prompt) + 20


def op_types(path: Path) -> list[str]:
    """The op type of each node of the graph at path."""
    import onnx

    return [node.op_type for node in onnx.load(str(path)).graph.node]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def test_int8_export_runs_the_lstm_and_output_layer_in_int8_close_to_float32(
    ort, run_cli, small_corpus, shakespeare_text, tmp_path, caplog
):
    run = train_small_model(run_cli, small_corpus, tmp_path / "run")
    assert run_cli("export", run, "-o", tmp_path / "float32").code == 0
    result = run_cli("export", run, "-o", tmp_path / "int8", "--quantize", "int8")
    assert result.code == 0 and result.err == "", result.err
    assert "pre-processing" not in caplog.text  # the quantizer's advice is not passed on
    folder = tmp_path / "int8"
    assert sorted(path.name for path in folder.iterdir()) == EXPORTED  # the float32 graph is not kept
    assert json.loads((folder / "config.json").read_text())["export"]["quantize"] == "int8"

    ops = set(op_types(folder / "model.onnx"))
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and not ops & {"LSTM", "MatMul", "Gemm"}, ops
    assert (folder / "model.onnx").stat().st_size < (tmp_path / "float32" / "model.onnx").stat().st_size / 2
    assert folder_bytes(folder) < folder_bytes(tmp_path / "float32")

    # Held-out text (the model trained on the first 40,000 characters), read from the zero state.
    model, tokenizer, _ = load_checkpoint(run)
    ids = torch.tensor([EOT_ID, *tokenizer.encode(shakespeare_text[50_000:52_000])[:400]])[None]
    zeros = torch.zeros(2, 1, 64)
    log_probs = run_graph(ort.InferenceSession(str(folder / "model.onnx")), ids, zeros, zeros)[0][0].astype(np.float64)
    with torch.no_grad():
        expected = F.log_softmax(model(ids, (zeros, zeros))[0], dim=-1)[0].double().numpy()
    # Measured on this model: a mean KL divergence per token of 1.0e-4 nats (1.6e-4 on an AVX2-only CPU),
    # each next token's log-probability within 0.08, the most likely token the same at 99% of positions.
    divergence = (np.exp(expected) * (expected - log_probs)).sum(-1)
    assert divergence.mean() < 1e-3, divergence.mean()
    targets = ids[0, 1:].numpy()
    positions = np.arange(len(targets))
    np.testing.assert_allclose(log_probs[positions, targets], expected[positions, targets], rtol=0, atol=0.3)
    assert (log_probs.argmax(-1) == expected.argmax(-1)).mean() > 0.95

    # The example reads it unchanged; its greedy text may part from float32's where two tokens are close.
    example = run_example(folder, tmp_path, "--prompt", "ROMEO:", "--max-tokens", "200")
    assert example.returncode == 0, example.stderr
    continuation = example.stdout.removeprefix("ROMEO:")
    assert example.stdout.startswith("ROMEO:") and len(continuation) > 100 and len(set(continuation)) > 5, (
        example.stdout
    )


@pytest.mark.parametrize("name", sorted(OUTPUT_LAYERS))
def test_int8_export_quantizes_every_lstm_layer_and_output_matrix(ort, run_cli, shakespeare_text, tmp_path, name):
    kind, vocab_size, settings = OUTPUT_LAYERS[name]
    tokenizer = build_tokenizer(kind, [shakespeare_text[:20_000]], vocab_size)
    run = write_checkpoint(tmp_path / "run", tokenizer, kind, **settings(tokenizer))
    result = run_cli("export", run, "-o", tmp_path / "onnx", "--quantize", "int8")
    assert result.code == 0, result.err
    nodes = op_types(tmp_path / "onnx" / "model.onnx")
    assert nodes.count("DynamicQuantizeLSTM") == 2 and "MatMulInteger" in nodes, nodes
    assert not {"LSTM", "MatMul", "Gemm"} & set(nodes), nodes  # no LSTM or matrix product left in float32


def write_mogrifier_checkpoint(folder: Path) -> Path:
    return write_checkpoint(
        folder, build_tokenizer("char", ["a mogrifier model"]), "char", cell="mogrifier", mogrifier_rounds=2
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        ("mogrifier", "is a --cell mogrifier model, which ONNX export does not support"),
        ("missing run", "no run"),
        ("output holds files", "is not empty: give a new folder, or pass --overwrite"),
        ("output is a file", "is a file: give a folder to export into"),
        ("output is the run", "is the run folder itself"),
        ("too large", "GiB of float32 weights: model.onnx, one file, holds at most"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(ort, run_cli, tmp_path, monkeypatch, case, expected):
    run = (
        write_mogrifier_checkpoint(tmp_path / "run") if case == "mogrifier" else write_tiny_checkpoint(tmp_path / "run")
    )
    output = tmp_path / "onnx"
    if case == "output holds files":
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    elif case == "output is a file":
        output.write_text("mine")
    elif case == "output is the run":
        output = run
    elif case == "too large":
        monkeypatch.setattr(export_module, "MAX_WEIGHT_BYTES", 10_000)  # the tiny model has ~120 KB of weights
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = run_cli("export", tmp_path / "nowhere" if case == "missing run" else run, "-o", output)
    assert result.code == 1
    assert result.err.startswith("error: ") and expected in result.err and result.err.count("\n") == 1, result.err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_overwrite_replaces_an_earlier_export(ort, run_cli, tmp_path):
    first = write_tiny_checkpoint(tmp_path / "first")
    second = write_checkpoint(tmp_path / "second", build_tokenizer("char", ["another text"]), "char")
    assert run_cli("export", first, "-o", tmp_path / "onnx").code == 0
    assert run_cli("export", second, "-o", tmp_path / "onnx").code == 1
    result = run_cli("export", second, "-o", tmp_path / "onnx", "--overwrite")
    assert result.code == 0, result.err
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == EXPORTED
    assert (tmp_path / "onnx" / TOKENIZER).read_text() == (second / TOKENIZER).read_text()


def test_a_graph_that_computes_something_else_is_not_written(ort, tmp_path, monkeypatch):
    """The written graph is checked against the model before it takes its name: here it is the
    graph of other weights, and no model.onnx (nor a temporary file) is left."""
    run = write_tiny_checkpoint(tmp_path / "run")
    write_graph = export_module._write_graph

    def write_other_weights(graph, path):
        other = copy.deepcopy(graph)
        with torch.no_grad():
            for parameter in other.parameters():
                parameter.mul_(1.5)
        write_graph(other, path)

    monkeypatch.setattr(export_module, "_write_graph", write_other_weights)
    with pytest.raises(TextlstmError, match="does not compute what the model does"):
        export_module.export_onnx(run, tmp_path / "onnx")
    assert list((tmp_path / "onnx").iterdir()) == []


def test_an_int8_graph_far_from_the_model_is_not_written(ort, tmp_path, monkeypatch):
    """The int8 graph is checked against the float32 model too: here it is the quantized graph of other
    weights, and neither model.onnx nor the float32 graph it came from (nor a temporary file) is left."""
    run = write_tiny_checkpoint(tmp_path / "run")
    other = export_module.StepGraph(load_checkpoint(run)[0]).eval()
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(1.5)
    quantize_graph = export_module._quantize_graph

    def quantize_other_weights(float_path, path):
        export_module._write_graph(other, float_path)
        quantize_graph(float_path, path)

    monkeypatch.setattr(export_module, "_quantize_graph", quantize_other_weights)
    with pytest.raises(TextlstmError, match=r"the int8 graph is far from the float32 model \(a mean KL divergence of"):
        export_module.export_onnx(run, tmp_path / "onnx", quantize="int8")
    assert list((tmp_path / "onnx").iterdir()) == []


def test_without_the_extra_the_error_names_it(run_cli, tmp_path, monkeypatch):
    run = write_tiny_checkpoint(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if it were not installed
    result = run_cli("export", run, "-o", tmp_path / "onnx")
    assert result.code == 1
    assert (
        result.err
        == "error: ONNX export needs the export extra (onnx is not installed): pip install 'textlstm[export]'\n"
    )
    assert not (tmp_path / "onnx").exists()
