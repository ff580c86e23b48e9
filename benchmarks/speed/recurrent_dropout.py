"""Does recurrent dropout keep the fused LSTM kernel? Time a real training step with and without it.

Hidden 512, 2 layers, char-sized vocabulary, batch 64 x 128, through textlstm's own model and
optimizer step. The two settings are timed in alternation (A B A B ...) so that load from other
processes hits both alike; the figure is the ratio of the medians. Writes
benchmarks/results/recurrent_dropout.json.

    python -m benchmarks.speed.recurrent_dropout [--rounds 10]
    python -m benchmarks.speed.recurrent_dropout --quick    # hidden 32, batch 4 x 16, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from benchmarks.speed.common import RESULTS, add_quick_options, output_folder
from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel


def make_step(dropout: float, recurrent_dropout: float, batch: int, seq_len: int, vocab: int, hidden: int = 512):
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            vocab_size=vocab,
            embedding_size=128,
            hidden_size=hidden,
            layers=2,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
        )
    ).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = torch.randint(2, vocab, (batch, seq_len))
    targets = torch.randint(2, vocab, (batch, seq_len))

    def step() -> float:
        start = time.perf_counter()
        loss_sum, count, _ = model.loss(inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        (loss_sum / count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - start

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    add_quick_options(parser, "hidden 32, batch 4 x 16, 2 rounds", "benchmarks/results/recurrent_dropout.json")
    args = parser.parse_args(argv)
    vocab, hidden = 100, 512
    if args.quick:
        args.rounds, args.batch, args.seq_len, hidden = 2, 4, 16, 32
    folder = output_folder(args.output_dir, args.quick)
    plain = make_step(0.0, 0.0, args.batch, args.seq_len, vocab, hidden)
    dropped = make_step(0.2, 0.25, args.batch, args.seq_len, vocab, hidden)
    for _ in range(3):
        plain(), dropped()
    plain_times, dropped_times = [], []
    for _ in range(args.rounds):
        plain_times.append(plain())
        dropped_times.append(dropped())
    tokens = args.batch * args.seq_len
    result = {
        "plain_step_sec": statistics.median(plain_times),
        "dropout_step_sec": statistics.median(dropped_times),
        "ratio": statistics.median(dropped_times) / statistics.median(plain_times),
        "plain_tokens_per_sec": tokens / statistics.median(plain_times),
        "dropout_tokens_per_sec": tokens / statistics.median(dropped_times),
        "settings": {
            "embedding": 128,
            "hidden": hidden,
            "layers": 2,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "vocab": vocab,
            "dropout": 0.2,
            "recurrent_dropout": 0.25,
            "rounds": args.rounds,
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
    }
    out = (folder or RESULTS) / "recurrent_dropout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"step without dropout: {result['plain_step_sec'] * 1000:.0f} ms ({result['plain_tokens_per_sec']:,.0f} tok/s)"
    )
    print(
        f"step with dropout 0.2 + recurrent dropout 0.25: {result['dropout_step_sec'] * 1000:.0f} ms "
        f"({result['dropout_tokens_per_sec']:,.0f} tok/s)"
    )
    print(f"ratio: {result['ratio']:.3f} (target <= 1.15); written to {out}")
    return result


if __name__ == "__main__":
    main()
