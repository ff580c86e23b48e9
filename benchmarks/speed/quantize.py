"""What do int8 weights buy for generation on a CPU, and what do they cost in quality?

A 2 x 256 and a 2 x 512 char model (embedding 64), each trained --minutes on tiny Shakespeare
through textlstm's trainer (or the runs given with --checkpoint), loaded three ways as
`textlstm.load` holds them: float32, bfloat16 (precision="bfloat16") and int8 (quantize="int8",
quantized from the float32 weights at load; nothing int8 is saved). For each, on one torch thread:

- tokens/s at batch 1: the sampling loop of `textlstm generate` (a stepper, the sampler at its
  default settings, one step per token; the text is not decoded, and end of text does not stop it,
  so every run makes --tokens tokens);
- tokens/s at batch 64: `model.step` on 64 rows, each fed its greedy token back;
- the weights' bytes in memory (int8: its matrices with their scales and biases, and the float32
  embedding and first-layer input matrix), and the float32 checkpoint's weights file on disk;
- bits per character of the validation text the run held out, through
  `textlstm.evaluation.scoring.evaluate_split` in one row. (With several rows, int8's rounding keeps
  each part's burned-in start state from matching the end state of the part before within the
  check's tolerance, so the parts are scored again, one round after another.)

The three are timed in alternation (benchmarks/speed/interleaved.py), medians kept, so that load from
other processes hits them alike. Writes benchmarks/results/quantize.json, prints a markdown table and
puts it in benchmarks/RESULTS.md, section "int8 weights" (with --output-dir: quantize.json and RESULTS.md
there). --quick trains 2 x 32 and 2 x 64 models for 20 steps on the start of the text and times them
briefly, into --output-dir or a new temporary folder.

    python -m benchmarks.speed.quantize [--minutes 4] [--runs DIR] [--checkpoint RUN ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.common import BENCHMARKS, add_quick_options, output_folder, shakespeare_sample
from benchmarks.speed.generate import PROMPT
from benchmarks.speed.interleaved import interleaved_medians
from benchmarks.speed.run import CORPUS, machine
from textlstm.config import DataConfig, ModelConfig, RunConfig, SamplingOptions, TrainConfig
from textlstm.data.prepare import prepare
from textlstm.evaluation.scoring import evaluate_split
from textlstm.generation.generator import TextGenerator, load
from textlstm.generation.sampler import TokenSampler, make_rng
from textlstm.model.quantized import QuantizedLanguageModel
from textlstm.runs.checkpoint import BEST_WEIGHTS, load_config
from textlstm.training.trainer import train

RESULTS = BENCHMARKS / "results" / "quantize.json"
REPORT = BENCHMARKS / "RESULTS.md"
SECTION = "## int8 weights"
HOLDINGS = {"float32": {}, "bfloat16": {"precision": "bfloat16"}, "int8": {"quantize": "int8"}}
SHAPES = {"char 2 x 256": 256, "char 2 x 512": 512}
QUICK_SHAPES = {"char 2 x 32 (quick)": 32, "char 2 x 64 (quick)": 64}


def trained_run(folder: Path, hidden: int, minutes: float, quick: bool, corpus: Path = CORPUS) -> Path:
    """A char model (embedding 64, or 16 with --quick) trained on `corpus` into `folder`; kept if already there."""
    if (folder / BEST_WEIGHTS).is_file():
        print(f"  reusing {folder}")
        return folder
    limit = {"max_steps": 20, "eval_every": 20, "eval_tokens": 2_000} if quick else {"max_minutes": minutes}
    config = RunConfig(
        model=ModelConfig(embedding_size=16 if quick else 64, hidden_size=hidden, layers=2),
        data=DataConfig(dataset=str(corpus), tokenizer="char"),
        train=TrainConfig(seed=1, device="cpu", save_every_minutes=0, **limit),
    )
    print(f"  training {folder.name} ({'20 steps' if quick else f'{minutes:g} minutes'})")
    train(config, output=folder, overwrite=True)
    return folder


def sampling_loop(lm: TextGenerator, tokens: int):
    """One run of the batch-1 sampling loop: read the prompt, then `tokens` times sample and step."""

    def run() -> None:
        stepper = lm.new_stepper(lm.encode(PROMPT))
        sampler = TokenSampler(SamplingOptions(), lm.tokenizer.vocab_size, make_rng(0))
        for _ in range(tokens):
            stepper.read([sampler(stepper.logits)])

    return run


def batched_steps(model, batch: int, steps: int):
    """`steps` greedy steps of `batch` rows through model.step."""

    @torch.inference_mode()
    def run() -> None:
        ids = torch.ones(batch, dtype=torch.long)
        state = model.initial_state(batch)
        for _ in range(steps):
            logits, state = model.step(ids, state)
            ids = logits.argmax(dim=-1)

    return run


def weight_bytes(model) -> int:
    if isinstance(model, QuantizedLanguageModel):
        return model.weight_bytes()
    return sum(p.numel() * p.element_size() for p in model.parameters())


def validation_bits_per_char(lm: TextGenerator, folder: Path) -> float:
    held_out = prepare(load_config(folder).data, lm.tokenizer, splits=("valid",)).splits["valid"]
    return evaluate_split(lm.model, held_out.ids, held_out.info, batch_size=1, seq_len=256).bits_per_char


def measure(name: str, folder: Path, args) -> dict:
    generators = {holding: load(folder, threads=1, **options) for holding, options in HOLDINGS.items()}
    print(f"{name} ({folder}): timing")
    start_load = os.getloadavg()[0]
    batch_1 = interleaved_medians(
        {h: sampling_loop(lm, args.tokens) for h, lm in generators.items()}, args.repeats, warmup=1
    )
    batch_64 = interleaved_medians(
        {h: batched_steps(lm.model, 64, args.batch_steps) for h, lm in generators.items()}, args.repeats, warmup=1
    )
    end_load = os.getloadavg()[0]
    figures = {}
    for holding, lm in generators.items():
        print(f"  {holding}: scoring the validation text")
        started = time.perf_counter()
        figures[holding] = {
            "batch_1_tokens_per_second": args.tokens / batch_1[holding],
            "batch_64_tokens_per_second": 64 * args.batch_steps / batch_64[holding],
            "weights_mb": weight_bytes(lm.model) / 1e6,
            "validation_bits_per_char": validation_bits_per_char(lm, folder),
            "scoring_seconds": time.perf_counter() - started,
        }
    return {
        "checkpoint": str(folder),
        "config": json.loads(load_config(folder).to_json())["model"],
        "weights_file_mb": (folder / BEST_WEIGHTS).stat().st_size / 1e6,
        "load_average": [round(start_load, 2), round(end_load, 2)],
        "holdings": figures,
    }


def markdown(results: dict) -> str:
    settings = results["settings"]
    lines = [
        SECTION,
        "",
        f"`python -m benchmarks.speed.quantize` ({results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
        f"torch {results['machine']['torch']}, one torch thread; commit {results['machine']['commit']}). Batch 1: the "
        f"sampling loop of `textlstm generate`, {settings['tokens']} tokens after a short prompt; batch 64: "
        f"{settings['batch_steps']} greedy `model.step` calls on 64 rows; medians of {settings['repeats']} interleaved "
        "runs. Weights: bytes held in memory (int8 is quantized from the float32 file at load). Bits/char: the "
        "validation text each run held out (the last 10% of tiny Shakespeare), `evaluate_split` in one row.",
        "",
        "| model | weights | batch 1 tok/s | batch 64 tok/s | weights in memory (MB) | validation bits/char "
        "| load avg start / end |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, run in results["models"].items():
        for holding, f in run["holdings"].items():
            load_start, load_end = run["load_average"][0], run["load_average"][1]
            lines.append(
                f"| {name} | {holding} | {f['batch_1_tokens_per_second']:,.0f} "
                f"| {f['batch_64_tokens_per_second']:,.0f} "
                f"| {f['weights_mb']:.2f} | {f['validation_bits_per_char']:.4f} | {load_start} / {load_end} |"
            )
    lines += [
        "",
        "The float32 weights files on disk: "
        + ", ".join(f"{name} {run['weights_file_mb']:.2f} MB" for name, run in results["models"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def put_section(report: Path, section: str) -> None:
    """Replace the report's int8 section (up to the next "## " heading) with `section`, or add it at the end."""
    text = report.read_text(encoding="utf-8") if report.is_file() else ""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + section
    report.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training minutes for each model")
    parser.add_argument(
        "--runs", type=Path, help="folder for the trained runs, reused when there (default: a temporary one)"
    )
    parser.add_argument(
        "--checkpoint", type=Path, action="append", help="measure this run instead of training (repeatable)"
    )
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per batch-1 run")
    parser.add_argument("--batch-steps", type=int, default=200, help="steps per batch-64 run")
    parser.add_argument("--repeats", type=int, default=5)
    add_quick_options(
        parser,
        "2 x 32 and 2 x 64 models trained 20 steps on the start of the text, timed briefly",
        "benchmarks/results/quantize.json and benchmarks/RESULTS.md",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.batch_steps, args.repeats = 50, 10, 2
    out_folder = output_folder(args.output_dir, args.quick)

    torch.set_num_threads(1)
    started = time.perf_counter()
    settings = {"tokens": args.tokens, "batch_steps": args.batch_steps, "repeats": args.repeats}
    results = {"machine": machine(), "settings": settings, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        if args.checkpoint:
            runs = {folder.name: folder for folder in args.checkpoint}
        else:
            root = args.runs or Path(scratch)
            shapes = QUICK_SHAPES if args.quick else SHAPES
            corpus = shakespeare_sample(Path(scratch)) if args.quick else CORPUS
            runs = {
                name: trained_run(root / f"char-2x{hidden}", hidden, args.minutes, args.quick, corpus)
                for name, hidden in shapes.items()
            }
        for name, folder in runs.items():
            results["models"][name] = measure(name, folder, args)
    results["seconds"] = round(time.perf_counter() - started)

    path, report = (
        (RESULTS, REPORT) if out_folder is None else (out_folder / "quantize.json", out_folder / "RESULTS.md")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    section = markdown(results)
    print("\n" + section)
    put_section(report, section)
    print(f"written to {path} and to {report}, section '{SECTION[3:]}'")
    return results


if __name__ == "__main__":
    main()
