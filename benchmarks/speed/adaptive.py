"""Full softmax vs adaptive softmax: training and scoring speed of a word model (issue #5).

The medium word-level config of Zaremba et al.: vocabulary 10,000, embedding and hidden 650, 2 layers,
batch 20 x 35, on tinyshakespeare's word tokens. Each output layer trains --steps timed steps (after
--warmup untimed ones) through `model.loss`, `clip_grad_norm_` and AdamW, on the same batches; then
scores the same batches without gradients. Tokens per second, best of --repeats.

    python -m benchmarks.speed.adaptive [--steps 20] [--warmup 3] [--repeats 2]
    python -m benchmarks.speed.adaptive --quick    # size 32, vocabulary 500, the start of the text, 2 steps

Writes benchmarks/results/adaptive.json and benchmarks/results/adaptive.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.common import RESULTS, SHAKESPEARE, add_quick_options, output_folder, shakespeare_sample

BATCH, SEQ_LEN, SIZE, VOCAB = 20, 35, 650, 10_000
QUICK_SIZE, QUICK_VOCAB = 32, 500


def word_batches(corpus_path: Path, vocabulary: int):
    os.environ.setdefault("TEXTLSTM_CACHE", tempfile.mkdtemp(prefix="textlstm-bench-adaptive-"))
    from textlstm.data.batchers import StreamBatcher
    from textlstm.data.corpora import load_corpus
    from textlstm.data.token_ids import tokenize_splits
    from textlstm.data.tokenizer import tokenizer_for_corpus

    corpus = load_corpus(str(corpus_path))
    tokenizer = tokenizer_for_corpus(corpus, "word", vocabulary)
    ids = tokenize_splits(corpus, tokenizer)["train"].ids
    return StreamBatcher(ids, BATCH, SEQ_LEN), tokenizer.vocab_size


def make_model(output_layer: str, vocab_size: int, size: int):
    from textlstm.config import ModelConfig
    from textlstm.model.network import LSTMLanguageModel

    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size, size, size, layers=2, dropout=0.5, recurrent_dropout=0.0, output_layer=output_layer
    )
    return LSTMLanguageModel(config)


def train_rate(model, batcher, steps: int, warmup: int) -> float:
    from textlstm.model.network import detach_state

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    state, tokens, started = None, 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            started, tokens = time.perf_counter(), 0
        inputs, targets = batcher.batch(step)
        loss, count, state = model.loss(inputs, targets, state)
        optimizer.zero_grad(set_to_none=True)
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        state = detach_state(state)
        tokens += int(count)
    return tokens / (time.perf_counter() - started)


@torch.no_grad()
def score_rate(model, batcher, steps: int) -> tuple[float, float]:
    """Tokens/s and mean loss (nats) scoring `steps` batches."""
    model.eval()
    state, tokens, nats, started = None, 0, 0.0, time.perf_counter()
    for step in range(steps):
        inputs, targets = batcher.batch(step)
        loss, count, state = model.loss(inputs, targets, state)
        tokens, nats = tokens + int(count), nats + float(loss)
    return tokens / (time.perf_counter() - started), nats / tokens


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    add_quick_options(
        parser,
        f"size {QUICK_SIZE}, vocabulary {QUICK_VOCAB}, the start of the text, 2 steps",
        "benchmarks/results/adaptive.json and adaptive.md",
    )
    args = parser.parse_args(argv)
    size, vocabulary, corpus = SIZE, VOCAB, SHAKESPEARE
    folder = output_folder(args.output_dir, args.quick)
    if args.quick:
        args.steps, args.warmup, args.repeats = 2, 1, 1
        size, vocabulary, corpus = QUICK_SIZE, QUICK_VOCAB, shakespeare_sample(folder)
    batcher, vocab_size = word_batches(corpus, vocabulary)
    figures = {}
    for output_layer in ("full", "adaptive"):
        model = make_model(output_layer, vocab_size, size)
        train = max(train_rate(model, batcher, args.steps, args.warmup) for _ in range(args.repeats))
        score, loss = max(score_rate(model, batcher, args.steps) for _ in range(args.repeats))
        figures[output_layer] = {
            "train_tokens_per_sec": round(train),
            "score_tokens_per_sec": round(score),
            "parameters": sum(p.numel() for p in model.parameters()),
            "load_average": os.getloadavg()[0],
        }
        print(output_layer, figures[output_layer], flush=True)
    speedup = figures["adaptive"]["train_tokens_per_sec"] / figures["full"]["train_tokens_per_sec"]
    score_speedup = figures["adaptive"]["score_tokens_per_sec"] / figures["full"]["score_tokens_per_sec"]
    result = {
        "config": f"word vocab {vocab_size}, embedding/hidden {size}, 2 layers, batch {BATCH} x {SEQ_LEN}, "
        f"tinyshakespeare{' (its first characters)' if args.quick else ''}",
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "steps": args.steps,
        "repeats": args.repeats,
        **figures,
        "train_speedup": round(speedup, 2),
        "score_speedup": round(score_speedup, 2),
    }
    folder = folder or RESULTS
    folder.mkdir(exist_ok=True)
    (folder / "adaptive.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {f['train_tokens_per_sec']:,} | {f['score_tokens_per_sec']:,} | {f['parameters']:,} "
        f"| {f['load_average']:.2f} |"
        for name, f in figures.items()
    )
    (folder / "adaptive.md").write_text(
        "# Adaptive softmax vs full softmax (`python -m benchmarks.speed.adaptive`)\n\n"
        f"{result['config']}; {args.steps} timed steps after {args.warmup} warm-up steps, best of {args.repeats}; "
        f"{result['machine']}, {result['torch_threads']} torch threads.\n\n"
        "| output layer | train tokens/s | score tokens/s | parameters | load average (1 min) |\n"
        "| --- | --- | --- | --- | --- |\n"
        f"{rows}\n\nAdaptive softmax trains {speedup:.2f}x and scores {score_speedup:.2f}x as fast as the full "
        "softmax.\n"
    )
    print(json.dumps(result, indent=2))
    print(f"written to {folder / 'adaptive.json'} and {folder / 'adaptive.md'}")
    return result


if __name__ == "__main__":
    main()
