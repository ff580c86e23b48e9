"""textlstm's speed, measured in one run on real text: training, evaluation, generation, tokenization.

Training steps are the trainer's own (training/step.py's TrainingStep) and are timed against a
plain hand-written PyTorch baseline on the same token ids, in alternation (A B A B ...), medians
kept, so that load from other processes hits both alike. Writes benchmarks/results/run.json and
benchmarks/RESULTS.md (or run.json and RESULTS.md in --output-dir).

    python -m benchmarks.speed.run            # the full run (about 15 minutes on 2 cores)
    python -m benchmarks.speed.run --quick    # tiny models on the start of the text, in seconds: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.speed import generate
from benchmarks.speed.common import BENCHMARKS, QUICK_CHARS, REPO, RESULTS, add_quick_options, output_folder
from benchmarks.speed.common import SHAKESPEARE as CORPUS
from benchmarks.speed.interleaved import interleaved_medians
from benchmarks.speed.peak import matmul_calls
from benchmarks.speed.precision_quality import compare as compare_precision_quality
from benchmarks.speed.run_report import write_results_md
from benchmarks.speed.tokenization import build_all, encode_all, megabytes_per_second
from benchmarks.speed.training_step import Shape, baseline_step, textlstm_step
from textlstm.config import ModelConfig
from textlstm.evaluation.scoring import evaluate_split
from textlstm.generation.generator import TextGenerator
from textlstm.model.network import LSTMLanguageModel


@dataclass(frozen=True)
class Settings:
    """How much of everything a run measures."""

    text_chars: int | None  # of tiny Shakespeare, from its start (None: all of it)
    rounds: int  # interleaved rounds of each timing
    tokenize_rounds: int
    matmul_size: int
    eval_tokens: int
    generate_hidden: int
    generate_tokens: int
    generate_repeats: int
    quality_hidden: int
    quality_steps: int


FULL = Settings(None, 9, 5, 2048, 65_536, 512, 2000, 5, 256, 300)
QUICK = Settings(QUICK_CHARS, 2, 1, 64, 2_048, 32, 20, 1, 16, 4)


def shapes(char_vocab: int, word_vocab: int, quick: bool = False) -> dict[str, Shape]:
    if quick:
        return {
            "char": Shape("char", char_vocab, 16, 32, 2, 4, 16),
            "word-small": Shape("word-small", word_vocab, 16, 16, 2, 4, 8),
            "word-medium": Shape("word-medium", word_vocab, 24, 24, 2, 4, 8),
            "keras": Shape("keras", char_vocab, 16, 32, 2, 4, 16, dropout=0.1, recurrent_dropout=0.1),
        }
    return {
        "char": Shape("char", char_vocab, 128, 512, 2, 64, 128),
        "word-small": Shape("word-small", word_vocab, 200, 200, 2, 20, 35),
        "word-medium": Shape("word-medium", word_vocab, 650, 650, 2, 20, 35),
        "keras": Shape("keras", char_vocab, 64, 256, 2, 64, 128, dropout=0.1, recurrent_dropout=0.1),
    }


def load_now() -> float:
    return round(os.getloadavg()[0], 2)


def rate(shape: Shape, seconds: float) -> float:
    return shape.tokens_per_step / seconds


def with_threads(step, threads: int):
    def call() -> None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            step()
        finally:
            torch.set_num_threads(previous)

    return call


def time_training(shape: Shape, ids: np.ndarray, rounds: int, matmul_size: int | None = None) -> dict:
    """textlstm float32 and bfloat16 against the float32 baseline (and the peak of a matmul_size square
    product, if given)."""
    contenders = {
        "baseline_float32": baseline_step(shape, ids),
        "textlstm_float32": textlstm_step(shape, ids, "float32"),
        "textlstm_bfloat16": textlstm_step(shape, ids, "bfloat16"),
    }
    flops = {}
    with_peak = matmul_size is not None
    if with_peak:
        for dtype, name in ((torch.float32, "float32"), (torch.bfloat16, "bfloat16")):
            for backend, (call, count) in matmul_calls(dtype, matmul_size).items():
                contenders[f"matmul_{backend}_{name}"], flops[f"matmul_{backend}_{name}"] = call, count
    load = load_now()
    medians = interleaved_medians(contenders, rounds)
    result = {"shape": shape.__dict__, "load_average": [load, load_now()], "seconds_per_step": medians}
    result["tokens_per_second"] = {n: rate(shape, s) for n, s in medians.items() if not n.startswith("matmul")}
    if with_peak:
        result["matmul_gflops"] = {n: flops[n] / medians[n] / 1e9 for n in flops}
        result["peak_gflops"] = {
            f"matmul_{d}": max(v for n, v in result["matmul_gflops"].items() if n.endswith(d))
            for d in ("float32", "bfloat16")
        }
        per_token = shape.flops_per_token()
        result["flops_per_token"] = per_token
        result["achieved_gflops"] = {n: r * per_token / 1e9 for n, r in result["tokens_per_second"].items()}
    print(
        f"  {shape.name}: "
        + ", ".join(f"{n} {v:,.0f} tok/s" for n, v in result["tokens_per_second"].items())
        + f" (load {result['load_average']})"
    )
    return result


def time_experiments(shape: Shape, ids: np.ndarray, rounds: int) -> dict:
    """What the step's parts cost: threads, the recurrent-dropout path, dropout at all."""
    full = textlstm_step(shape, ids)
    contenders = {
        "textlstm_2_threads": with_threads(full, 2),
        "textlstm_1_thread": with_threads(textlstm_step(shape, ids), 1),
        "textlstm_no_recurrent_dropout": textlstm_step(shape, ids, recurrent_dropout=0.0),
        "textlstm_no_dropout_at_all": textlstm_step(shape, ids, dropout=0.0, recurrent_dropout=0.0),
    }
    load = load_now()
    medians = interleaved_medians(contenders, rounds)
    result = {"load_average": [load, load_now()], "tokens_per_second": {n: rate(shape, s) for n, s in medians.items()}}
    print("  experiments: " + ", ".join(f"{n} {v:,.0f}" for n, v in result["tokens_per_second"].items()))
    return result


def time_evaluation(shape: Shape, valid_ids: np.ndarray, tokens: int, rounds: int) -> dict:
    """evaluate_split tokens/s (batch 32 x 256, as `textlstm eval`) of the char model, float32 and bfloat16."""
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            vocab_size=shape.vocab, embedding_size=shape.embedding, hidden_size=shape.hidden, layers=shape.layers
        )
    )
    contenders = {
        p: (lambda p=p: evaluate_split(model, valid_ids, max_tokens=tokens, precision=p))
        for p in ("float32", "bfloat16")
    }
    load = load_now()
    medians = interleaved_medians(contenders, rounds, warmup=1)
    result = {
        "tokens": tokens,
        "load_average": [load, load_now()],
        "tokens_per_second": {p: tokens / s for p, s in medians.items()},
    }
    print("  evaluation: " + ", ".join(f"{n} {v:,.0f} tok/s" for n, v in result["tokens_per_second"].items()))
    return result


def time_generation(hidden: int, tokens: int, repeats: int) -> dict:
    """benchmarks/speed/generate.py's figures, float32 weights and bfloat16 weights, plus `textlstm generate`'s
    first token."""
    lm, config = generate.make_generator(hidden)
    load = load_now()
    float32 = generate.tokens_per_second(lm, tokens, repeats)
    bf16_model = LSTMLanguageModel(lm.model.config)
    bf16_model.load_state_dict(lm.model.state_dict())
    bf16_lm = TextGenerator(bf16_model.to(torch.bfloat16).eval(), lm.tokenizer)
    bfloat16 = generate.tokens_per_second(bf16_lm, tokens, repeats)
    first = generate.time_to_first_token(lm, config, repeats)
    return {
        "hidden_size": hidden,
        "tokens": tokens,
        "repeats": repeats,
        "load_average": [load, load_now()],
        "float32": float32,
        "bfloat16_weights": bfloat16,
        "first_token": first,
    }


def machine() -> dict:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit, dirty = git("rev-parse", "--short", "HEAD"), git("status", "--porcelain")
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_quick_options(
        parser,
        "tiny models on the first characters of the text",
        "benchmarks/results/run.json and benchmarks/RESULTS.md",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own, the number of cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    settings = QUICK if quick else FULL
    folder = output_folder(args.output_dir, quick)
    started = time.perf_counter()
    command = " ".join(["python -m benchmarks.speed.run", *(sys.argv[1:] if argv is None else argv)])
    results: dict = {"machine": machine(), "command": command, "quick": quick, "load_average_at_start": load_now()}
    print(f"textlstm speed run ({'quick' if quick else 'full'}); {results['machine']}")

    text = CORPUS.read_text(encoding="utf-8")[: settings.text_chars]
    tokenizers = build_all(text)
    results["tokenization_text_mb"] = len(text.encode()) / 1e6
    results["tokenization_mb_per_second"] = megabytes_per_second(tokenizers, text, settings.tokenize_rounds)
    print("  tokenization MB/s: " + ", ".join(f"{n} {v:.1f}" for n, v in results["tokenization_mb_per_second"].items()))
    char_ids = np.asarray(encode_all(tokenizers["char"], text), dtype=np.int64)
    word_ids = np.asarray(encode_all(tokenizers["word"], text), dtype=np.int64)
    split = int(0.9 * len(char_ids))
    train_char, valid_char = char_ids[:split], char_ids[split:]
    shape = shapes(tokenizers["char"].vocab_size, tokenizers["word"].vocab_size, quick)

    rounds = settings.rounds
    training = {"char": time_training(shape["char"], train_char, rounds, settings.matmul_size)}
    for name, ids in (("word-small", word_ids), ("word-medium", word_ids), ("keras", train_char)):
        training[name] = time_training(shape[name], ids, rounds)
    results["training"] = training
    results["experiments"] = time_experiments(shape["char"], train_char, rounds)
    results["evaluation"] = time_evaluation(shape["char"], valid_char, settings.eval_tokens, rounds)
    results["generation"] = time_generation(
        settings.generate_hidden, settings.generate_tokens, settings.generate_repeats
    )
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "text.txt"
        corpus.write_text(text, encoding="utf-8")
        results["bfloat16_quality"] = compare_precision_quality(corpus, settings.quality_steps, settings.quality_hidden)
    print(f"  bf16 quality: {results['bfloat16_quality']}")
    results["load_average_at_end"] = load_now()
    results["seconds"] = round(time.perf_counter() - started)

    out, page = (
        (RESULTS / "run.json", BENCHMARKS / "RESULTS.md")
        if folder is None
        else (folder / "run.json", folder / "RESULTS.md")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    write_results_md(results, page)
    print(f"written to {out} and {page}")
    return results


if __name__ == "__main__":
    main()
