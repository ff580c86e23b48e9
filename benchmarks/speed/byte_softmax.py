"""Time of a char-model training step with the byte-fallback softmax against a plain softmax over
the whole vocabulary (issue 11: byte fallback without paying for 256 extra outputs on every step).

    python -m benchmarks.speed.byte_softmax                      # both shapes, 1 thread
    python -m benchmarks.speed.byte_softmax --threads 2 --steps 60
    python -m benchmarks.speed.byte_softmax --quick              # a tiny shape, 2 steps: checks that it runs

Each step is forward, backward and an AdamW update on the same random ids of tiny Shakespeare's
vocabulary (65 characters, 323 ids with the byte tokens); the two output layers alternate step by
step so that a change in the machine's load hits both alike. Prints the median step time of each,
and the load average before and after: on a shared machine, compare the ratio, not the times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel

VOCAB, FIRST_CHAR = 323, 258  # PAD, EOT, 256 bytes, 65 characters
SHAPES = {
    "issue 10 (emb 64, 2 x 128, batch 32 x 64)": (64, 128, 32, 64),
    "emb 64, 2 x 256, batch 64 x 128": (64, 256, 64, 128),
}
QUICK_SHAPES = {"emb 8, 2 x 16, batch 4 x 8 (quick)": (8, 16, 4, 8)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """The median step seconds of each output layer, by shape."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each output layer, per shape")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a tiny shape and 2 steps, to check that it runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 2
    torch.set_num_threads(args.threads)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; torch threads {args.threads}")
    results = {}
    for name, (embedding, hidden, batch, seq) in (QUICK_SHAPES if args.quick else SHAPES).items():
        models = {}
        for label, byte_start in (("plain softmax (323 outputs)", None), ("byte-fallback softmax (68 outputs)", 2)):
            torch.manual_seed(0)
            config = ModelConfig(
                VOCAB,
                embedding_size=embedding,
                hidden_size=hidden,
                layers=2,
                dropout=0.1,
                recurrent_dropout=0.1,
                byte_fallback_start=byte_start,
            )
            model = LSTMLanguageModel(config).train()
            models[label] = (model, torch.optim.AdamW(model.parameters(), lr=1e-3))
        ids = torch.randint(FIRST_CHAR, VOCAB, (batch, seq + 1))
        times = {label: [] for label in models}
        for step in range(args.steps + 3):  # the first 3 of each warm up
            for label, (model, optimizer) in models.items():
                started = time.perf_counter()
                loss, count, _ = model.loss(ids[:, :-1], ids[:, 1:])
                optimizer.zero_grad()
                (loss / count).backward()
                optimizer.step()
                if step >= 3:
                    times[label].append(time.perf_counter() - started)
        medians = results[name] = {label: statistics.median(values) for label, values in times.items()}
        plain, byte = medians.values()
        print(
            f"{name}: "
            + ", ".join(f"{label} {ms * 1000:.1f} ms" for label, ms in medians.items())
            + f"; byte-fallback / plain {byte / plain:.2f}x"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return results


if __name__ == "__main__":
    main()
