"""How fast does textlstm generate? Tokens per second at batch 1, and the time to the first token.

A char model with hidden 512, 2 layers and random weights (speed does not depend on training; the
end-of-text token is switched off so every run makes exactly --tokens tokens), on the default
torch thread settings, through the Python API (`TextGenerator.generate`). Then the time from
starting `textlstm generate` as a subprocess to the first generated character on its stdout.
Writes benchmarks/results/generate.json.

    python -m benchmarks.speed.generate [--tokens 2000] [--repeats 5]
    python -m benchmarks.speed.generate --quick    # hidden 32, a few tokens, one run: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.common import REPO, RESULTS, add_quick_options, output_folder
from textlstm.config import ModelConfig, RunConfig, SamplingOptions
from textlstm.data.tokenizer import build_tokenizer
from textlstm.fileio import write_text
from textlstm.generation.generator import TextGenerator
from textlstm.generation.sampler import TokenSampler, make_rng
from textlstm.generation.stepper import sample_tokens
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.checkpoint import BEST_WEIGHTS, CONFIG, TOKENIZER, save_weights
from textlstm.tokens import EOT_ID

ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-&$\n"  # tinyshakespeare's 65
PROMPT = "ROMEO:\nBut soft, what light"
SETTINGS = {
    "default (temperature 0.8)": {},
    "top-k 40, top-p 0.9, repetition penalty 1.2": {"top_k": 40, "top_p": 0.9, "repetition_penalty": 1.2},
    "greedy": {"temperature": 0},
}


def make_generator(hidden: int = 512) -> tuple[TextGenerator, RunConfig]:
    tokenizer = build_tokenizer("char", [ALPHABET])
    config = RunConfig(model=ModelConfig(tokenizer.vocab_size, embedding_size=64, hidden_size=hidden, layers=2))
    torch.manual_seed(0)
    model = LSTMLanguageModel(config.model)
    with torch.no_grad():
        model.decoder.bias[EOT_ID] = -1e4
    return TextGenerator(model.eval(), tokenizer), config


def tokens_per_second(lm: TextGenerator, tokens: int, repeats: int) -> dict:
    """Tokens per second for each setting, timed in alternation so that load from other processes
    hits them alike."""
    rates = {name: [] for name in SETTINGS}
    for seed in range(repeats):
        for name, options in SETTINGS.items():
            start = time.perf_counter()
            lm.generate(PROMPT, max_tokens=tokens, seed=seed, **options)
            rates[name].append(tokens / (time.perf_counter() - start))
    figures = {}
    for name, values in rates.items():
        figures[name] = {"median": round(statistics.median(values)), "best": round(max(values))}
        print(f"  {name:45s} median {figures[name]['median']:6d} tokens/s   best {figures[name]['best']:6d}")
    return figures


def early_and_late_cost(lm: TextGenerator, repeats: int) -> dict:
    """Microseconds per token over tokens 0-200 and 2000-2200 of one generation (min over repeats)."""
    early, late = [], []
    for seed in range(repeats):
        stepper = lm.new_stepper(lm.tokenizer.encode(PROMPT))
        sampler = TokenSampler(SamplingOptions(), lm.tokenizer.vocab_size, make_rng(seed))
        times = [time.perf_counter()]
        for _ in sample_tokens(stepper, sampler, 2200):
            times.append(time.perf_counter())
        early.append((times[200] - times[0]) / 200 * 1e6)
        late.append((times[2200] - times[2000]) / 200 * 1e6)
    figures = {"tokens_0_200_us": round(min(early), 1), "tokens_2000_2200_us": round(min(late), 1)}
    figures["late_over_early"] = round(figures["tokens_2000_2200_us"] / figures["tokens_0_200_us"], 3)
    print(f"  per token: tokens 0-200 {figures['tokens_0_200_us']} us, 2000-2200 {figures['tokens_2000_2200_us']} us")
    return figures


def time_to_first_token(lm: TextGenerator, config: RunConfig, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        write_text(folder / CONFIG, config.to_json())
        lm.tokenizer.save(folder / TOKENIZER)
        save_weights(lm.model, folder / BEST_WEIGHTS, step=0)
        command = [
            sys.executable,
            "-m",
            "textlstm",
            "generate",
            "--checkpoint",
            str(folder),
            "--prompt",
            PROMPT,
            "--max-tokens",
            "50",
            "--seed",
            "0",
            "--device",
            "cpu",
            "--precision",
            "float32",
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        seconds = [_first_token_seconds(command, env) for _ in range(repeats)]
    figures = {"median_s": round(statistics.median(seconds), 3), "best_s": round(min(seconds), 3)}
    print(f"  `textlstm generate` start to first token: median {figures['median_s']} s, best {figures['best_s']} s")
    return figures


def _first_token_seconds(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    received = b""
    try:
        while len(received) <= len(PROMPT.encode()):
            select.select([process.stdout], [], [], 60)
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("textlstm generate ended before writing a token")
            received += chunk
        return time.perf_counter() - start
    finally:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    add_quick_options(parser, "hidden 32, 20 tokens, one run", "benchmarks/results/generate.json")
    args = parser.parse_args(argv)
    hidden = 32 if args.quick else 512
    if args.quick:
        args.tokens, args.repeats = 20, 1
    folder = output_folder(args.output_dir, args.quick)

    lm, config = make_generator(hidden)
    print(
        f"char model, hidden {hidden}, 2 layers, vocab {lm.tokenizer.vocab_size}; torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"generation at batch 1 ({args.tokens} tokens per run, {args.repeats} runs):")
    results = {
        "model": {"tokenizer": "char", "vocab_size": lm.tokenizer.vocab_size, "hidden_size": hidden, "layers": 2},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": round(os.getloadavg()[0], 2),
        },
        "tokens_per_second": tokens_per_second(lm, args.tokens, args.repeats),
        "cost_per_token": early_and_late_cost(lm, 1 if args.quick else 3),
        "first_token": time_to_first_token(lm, config, args.repeats),
    }
    results["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    out = (folder or RESULTS) / "generate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out}")
    return results


if __name__ == "__main__":
    main()
