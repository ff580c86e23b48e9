"""The model summary, `textlstm info` and `textlstm runs`."""

import json
import os
import time

import pytest
from safetensors.torch import load_file

from conftest import TINY_MODEL, write_tiny_checkpoint
from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel
from textlstm.model.summary import layer_rows


@pytest.mark.parametrize(
    "options",
    [
        dict(embedding_size=16, hidden_size=32, layers=2),
        dict(embedding_size=16, hidden_size=32, layers=3, tie_weights=True),  # tied, with a projection
        dict(embedding_size=32, hidden_size=32, layers=1, tie_weights=True),  # tied, no projection
        dict(embedding_size=16, hidden_size=32, layers=2, output_layer="adaptive", adaptive_cutoffs=[20, 100]),
    ],
    ids=["plain", "tied-projected", "tied", "adaptive"],
)
def test_summary_rows_count_every_weight_once(options):
    model = LSTMLanguageModel(ModelConfig(vocab_size=300, **options))
    rows = layer_rows(model)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(row.parameters for row in rows) == sum(unique.values())
    assert [row.name for row in rows if row.name.startswith("lstm")] == [
        f"lstm_{i + 1}" for i in range(model.config.layers)
    ]
    by_name = {row.name: row for row in rows}
    assert by_name["embedding"].output_shape == (None, None, model.config.embedding_size)
    assert by_name["embedding"].parameters == 300 * model.config.embedding_size
    assert by_name["output"].output_shape == (None, None, 300)
    assert by_name["lstm_1"].output_shape == (None, None, 32)
    # PyTorch's LSTM layer: 4 gates, input and recurrent weights, two biases
    assert by_name["lstm_1"].parameters == 4 * 32 * (model.config.embedding_size + 32 + 2)
    if model.config.tie_weights:
        assert by_name["output"].parameters == 300  # the bias: the weight is the embedding's, already counted


def test_masking_row_only_where_padding_is_masked():
    model = LSTMLanguageModel(ModelConfig(vocab_size=50, embedding_size=8, hidden_size=8, layers=1))
    assert "masking" not in [row.name for row in layer_rows(model)]
    assert [row.name for row in layer_rows(model, masked=True)][:2] == ["embedding", "masking"]


def train_tiny(run_cli, corpus, out, *extra):
    result = run_cli(
        "train", "--dataset", corpus, *TINY_MODEL, "--max-steps", "6", "--eval-every", "3", "--output", out, *extra
    )
    assert result.code == 0, result.err
    return result


def test_train_prints_the_summary_and_info_json_matches_the_weights(run_cli, small_corpus, tmp_path):
    out = tmp_path / "run"
    trained = train_tiny(run_cli, small_corpus, out, "--tie-weights", "--batching", "documents")
    assert "lstm_2 (LSTM" in trained.err and "masking (Masking" in trained.err and "Total" in trained.err

    result = run_cli("info", out, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    weights = load_file(str(out / "model.safetensors"))
    assert info["parameters"] == sum(t.numel() for t in weights.values())
    assert info["parameters"] == sum(layer["parameters"] for layer in info["layers"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(records, key=lambda r: r["valid_loss"])
    assert info["steps"] == 6 and info["best_step"] == best["step"]
    assert info["best_valid_loss"] == best["valid_loss"]
    assert info["best_valid_bits_per_char"] == best["valid_bits_per_char"]
    assert info["tokenizer"] == {"kind": "char", "vocab_size": weights["decoder.bias"].shape[0]}
    assert info["corpus"] == str(small_corpus) and info["parent"] is None


def test_info_table_names_layers_tokenizer_corpus_and_best_loss(run_cli, small_corpus, tmp_path):
    train_tiny(run_cli, small_corpus, tmp_path / "checkpoints" / "only")
    result = run_cli("info")  # the newest run under ./checkpoints
    assert result.code == 0, result.err
    for text in (
        "embedding (Embedding)",
        "lstm_1 (LSTM",
        "output (Linear + byte softmax)",
        "(None, None, 32)",
        "Total",
        "tokenizer: char",
        "small.txt",
        "trained: 6 steps",
        "bits per character",
    ):
        assert text in result.out, text


def test_info_of_a_folder_that_is_not_a_run_is_one_error_line(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("info", tmp_path / "empty")
    assert result.code == 1 and result.err.count("\n") == 1 and result.err.startswith("error: ")


def test_runs_lists_newest_first_and_survives_a_broken_run(run_cli, small_corpus, tmp_path):
    root = tmp_path / "checkpoints"
    train_tiny(run_cli, small_corpus, root / "older")
    train_tiny(run_cli, small_corpus, root / "newer", "--hidden-size", "48")
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text("{")
    past = time.time() - 3600
    for name in ("broken", "older"):
        for path in [root / name, *(root / name).iterdir()]:
            os.utime(path, (past, past))
    for path in (root / "broken", root / "broken" / "config.json"):
        os.utime(path, (past - 60, past - 60))

    listed = json.loads(run_cli("runs", "--json").out)
    assert [row["name"] for row in listed] == ["newer", "older", "broken"]
    newer, older = listed[0], listed[1]
    assert newer["parameters"] > older["parameters"] and newer["steps"] == 6
    assert newer["tokenizer"].startswith("char") and newer["corpus"] == str(small_corpus)
    assert listed[2]["problem"]

    table = run_cli("runs")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines.index(next(line for line in lines if "newer" in line)) < lines.index(
        next(line for line in lines if "older" in line)
    )
    assert "unreadable config.json" in table.out


def strict_json(text: str):
    """JSON as the standard has it: NaN and Infinity are not part of it."""

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def test_info_and_runs_show_a_run_whose_losses_are_not_finite(run_cli, tmp_path):
    """A run that diverged: metrics.jsonl holds NaN and Infinity (as json.dumps writes them)."""
    nan, inf = float("nan"), float("inf")
    evaluations = {
        "diverged": [(3, nan), (6, inf)],  # no finite validation loss at all
        "went-bad": [(3, 2.5), (6, nan)],  # a best, then a non-finite last evaluation
    }
    for name, losses in evaluations.items():
        run = write_tiny_checkpoint(tmp_path / "checkpoints" / name)
        records = [
            {
                "step": step,
                "train_loss": loss,
                "valid_loss": loss,
                "valid_bits_per_char": loss / 0.69,
                "valid_perplexity": inf,
                "elapsed_sec": float(step),
            }
            for step, loss in losses
        ]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    diverged = run_cli("info", tmp_path / "checkpoints" / "diverged")
    assert diverged.code == 0, diverged.err
    assert "trained: 6 steps" in diverged.out
    assert "best validation: none with a finite loss" in diverged.out
    assert "last validation: loss inf nats per token at step 6" in diverged.out

    went_bad = run_cli("info", tmp_path / "checkpoints" / "went-bad")
    assert went_bad.code == 0, went_bad.err
    assert "best validation: loss 2.5000 nats per token at step 3" in went_bad.out
    assert "last validation: loss nan nats per token at step 6" in went_bad.out

    details = strict_json(run_cli("info", "--json", tmp_path / "checkpoints" / "diverged").out)
    assert details["steps"] == 6 and details["best_valid_loss"] is None
    listed = strict_json(run_cli("runs", "--json").out)
    assert {row["name"]: row["steps"] for row in listed} == {"diverged": 6, "went-bad": 6}
    table = run_cli("runs")
    assert table.code == 0 and "diverged" in table.out and "went-bad" in table.out
