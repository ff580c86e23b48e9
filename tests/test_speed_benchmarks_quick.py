"""Every speed benchmark's --quick run (benchmarks/speed/): the code of the recorded run on a tiny model and text.

Each writes into the test's folder, says what it measured, and leaves the recorded results as they were."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.speed
from benchmarks.speed import (
    adaptive,
    byte_softmax,
    ddp,
    generate,
    quantize,
    recurrent_dropout,
    run,
    scale,
    streaming,
    threads,
    training_step,
)
from benchmarks.speed.common import BENCHMARKS, REPO, RESULTS

QUICK_TESTED = {
    "adaptive",
    "byte_softmax",
    "ddp",
    "generate",
    "quantize",
    "recurrent_dropout",
    "run",
    "scale",
    "serving",
    "streaming",
    "threads",
    "training_step",
}
GNU_TIME = Path("/usr/bin/time")


def recorded_files() -> dict[Path, str]:
    files = [*RESULTS.rglob("*"), *BENCHMARKS.glob("*.md")]
    return {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in files if path.is_file()}


@pytest.fixture(autouse=True)
def recorded_results_untouched():
    before = recorded_files()
    yield
    assert recorded_files() == before


def test_every_speed_benchmark_has_a_quick_test():
    modules = {module.name for module in pkgutil.iter_modules(benchmarks.speed.__path__)}
    with_main = {name for name in modules if "\ndef main(" in (BENCHMARKS / "speed" / f"{name}.py").read_text()}
    assert with_main == QUICK_TESTED


def all_positive(rates: dict) -> bool:
    return bool(rates) and all(isinstance(rate, float | int) and rate > 0 for rate in rates.values())


def test_run(tmp_path):
    run.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "run.json").read_text())
    assert measured["quick"]
    assert measured["command"] == f"python -m benchmarks.speed.run --quick --output-dir {tmp_path}"
    assert set(measured["training"]) == {"char", "word-small", "word-medium", "keras"}
    assert all(all_positive(shape["tokens_per_second"]) for shape in measured["training"].values())
    assert all_positive(measured["training"]["char"]["peak_gflops"])
    assert all_positive(measured["evaluation"]["tokens_per_second"])
    assert measured["generation"]["first_token"]["median_s"] > 0
    assert math.isfinite(measured["bfloat16_quality"]["bfloat16_valid_loss"])
    page = (tmp_path / "RESULTS.md").read_text()
    assert "## Targets (issue #5)" in page and "## bfloat16 quality" in page


def test_training_step(tmp_path):
    output = tmp_path / "steps.json"
    training_step.main(["--quick", "--output", str(output)])
    measured = json.loads(output.read_text())["shapes"]
    assert list(measured) == ["tiny"] and measured["tiny"]["errors"] == {}
    assert all_positive(measured["tiny"]["tokens_per_second"])


def test_adaptive(tmp_path):
    adaptive.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "adaptive.json").read_text())
    assert all(measured[layer]["train_tokens_per_sec"] > 0 for layer in ("full", "adaptive"))
    assert "Adaptive softmax trains" in (tmp_path / "adaptive.md").read_text()


def test_byte_softmax():
    measured = byte_softmax.main(["--quick"])
    assert len(measured) == 1 and all(len(medians) == 2 and all_positive(medians) for medians in measured.values())


def test_ddp_in_one_process():
    measured = ddp.main(["--quick"])
    assert measured["processes"] == 1 and measured["tokens_per_sec"] > 0


def test_ddp_in_two_processes():
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "benchmarks.speed.ddp",
        "--quick",
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["processes"] == 2 and measured["tokens_per_sec"] > 0
    assert measured["allreduce_bytes_per_step"] == 4 * measured["parameters"]  # every float32 gradient, once


def test_generate(tmp_path):
    generate.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "generate.json").read_text())
    assert set(measured["tokens_per_second"]) == set(generate.SETTINGS)
    assert all(figures["median"] > 0 for figures in measured["tokens_per_second"].values())
    assert measured["first_token"]["median_s"] > 0


def test_quantize(tmp_path):
    quantize.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "quantize.json").read_text())["models"]
    assert len(measured) == 2
    for model in measured.values():
        assert set(model["holdings"]) == {"float32", "bfloat16", "int8"}
        assert all(
            math.isfinite(h["validation_bits_per_char"]) and h["batch_1_tokens_per_second"] > 0
            for h in model["holdings"].values()
        )
    assert (tmp_path / "RESULTS.md").read_text().startswith(quantize.SECTION)


def test_recurrent_dropout(tmp_path):
    recurrent_dropout.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "recurrent_dropout.json").read_text())
    assert measured["ratio"] > 0 and measured["settings"]["hidden"] == 32


@pytest.mark.skipif(not GNU_TIME.is_file(), reason="GNU time is not installed (/usr/bin/time; apt install time)")
def test_scale(tmp_path):
    scale.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "scale.json").read_text())
    assert measured["corpus_mb"] >= 2 and measured["train_tokens"] > 0 and measured["under_bound"]
    assert "| scale: 2 MB .txt, char tokenizer, 2 steps |" in (tmp_path / "scale.md").read_text()


@pytest.mark.skipif(not GNU_TIME.is_file(), reason="GNU time is not installed (/usr/bin/time; apt install time)")
def test_streaming(tmp_path):
    streaming.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "streaming.json").read_text())
    assert measured["steps"] == 2 and measured["peak_rss_mb"] > 0 and measured["run_folder_bytes"] > 0


def test_threads(tmp_path):
    threads.main(["--quick", "--output-dir", str(tmp_path)])
    (row,) = json.loads((tmp_path / "threads.json").read_text())["rows"]
    assert set(row) == {"model", *threads.QUICK_POINTS} and all(row[point] > 0 for point in threads.QUICK_POINTS)


def test_serving(tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    from benchmarks.speed import serving

    serving.main(["--quick", "--output-dir", str(tmp_path)])
    measured = json.loads((tmp_path / "serving.json").read_text())
    assert [level["clients"] for level in measured["levels"]] == [1, 4]
    assert all(level["total_tokens_per_sec"] > 0 for level in measured["levels"])
    assert measured["scoring"][0]["tokens_per_sec"] > 0
    assert measured["kept_conversations"]["kept"] == 50 and measured["active_sequences_after"] == 0
    assert "# Serving benchmark" in (tmp_path / "SERVING.md").read_text()
