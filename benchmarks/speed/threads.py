"""Training tokens/s at 1 and 2 torch threads, for small and large models, with and without a busy neighbour.

Each measurement runs in a fresh process, so OMP_NUM_THREADS and OMP_WAIT_POLICY are read by OpenMP
when torch loads, as they are for a user. A "busy" run has another process spinning on one core
(what a second job, a browser or a test suite does to a 2-core machine).

    python -m benchmarks.speed.threads [--seconds 15]   # writes benchmarks/results/threads.json, prints a table
    python -m benchmarks.speed.threads --quick          # a tiny model, half a second a point
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.speed.common import REPO, RESULTS, add_quick_options, output_folder

# name: (vocab, embedding, hidden, layers, batch, seq_len)
SHAPES = {
    "char 2x128 (emb 64, batch 32x64)": (67, 64, 128, 2, 32, 64),
    "char 2x256 (emb 64, batch 64x128)": (67, 64, 256, 2, 64, 128),
    "char 2x512 (emb 128, batch 32x64)": (67, 128, 512, 2, 32, 64),
    "word 2x650 (emb 650, batch 32x35, vocab 10k)": (10_000, 650, 650, 2, 32, 35),
}
QUICK_SHAPES = {"char 2x16 (emb 8, batch 4x8)": (67, 8, 16, 2, 4, 8)}

CHILD = r"""
import json, sys, time, torch
from textlstm.config import ModelConfig
from textlstm.model.network import LSTMLanguageModel
vocab, emb, hidden, layers, batch, seq = json.loads(sys.argv[1])
seconds = float(sys.argv[2])
torch.manual_seed(0)
model = LSTMLanguageModel(ModelConfig(vocab, emb, hidden, layers, dropout=0.1, recurrent_dropout=0.1)).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(2, vocab, (batch, seq + 1))
def step():
    loss, count, _ = model.loss(ids[:, :-1], ids[:, 1:])
    opt.zero_grad(); (loss / count).backward(); opt.step()
for _ in range(3):
    step()
steps, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    step(); steps += 1
elapsed = time.perf_counter() - start
print(json.dumps({"tokens_per_sec": steps * batch * seq / elapsed, "threads": torch.get_num_threads()}))
"""


def measure(shape, threads: int, policy: str | None, seconds: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(shape), str(seconds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_sec"]


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


# The points measured for each model: column -> (threads, OMP_WAIT_POLICY or None for OpenMP's default, its heading)
IDLE = {"idle_1t": (1, "PASSIVE", "idle 1 thread"), "idle_2t": (2, "PASSIVE", "idle 2 threads")}
BUSY = {  # with another process spinning on one core
    "busy_1t_passive": (1, "PASSIVE", "busy 1 thread"),
    "busy_2t_passive": (2, "PASSIVE", "busy 2 threads PASSIVE"),
    "busy_2t_default": (2, None, "busy 2 threads default wait"),
}
QUICK_POINTS = ("idle_1t", "busy_2t_default")  # one of each kind: each point is a new process that imports torch


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long each point trains")
    add_quick_options(parser, "a tiny model, two points of half a second", "benchmarks/results/threads.json")
    args = parser.parse_args(argv)
    seconds = 0.5 if args.quick else args.seconds
    folder = output_folder(args.output_dir, args.quick) or RESULTS
    idle, busy = IDLE, BUSY
    if args.quick:
        idle, busy = ({c: p for c, p in points.items() if c in QUICK_POINTS} for points in (IDLE, BUSY))
    rows = []
    load_before = os.getloadavg()[0]
    for name, shape in (QUICK_SHAPES if args.quick else SHAPES).items():
        row = {"model": name}
        for column, (threads, policy, _) in idle.items():
            row[column] = measure(shape, threads, policy, seconds)
        neighbour = spinner()
        try:
            time.sleep(1)
            for column, (threads, policy, _) in busy.items():
                row[column] = measure(shape, threads, policy, seconds)
        finally:
            neighbour.kill()
            neighbour.wait()
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"load_average_before": load_before, "cpus": os.cpu_count(), "seconds_per_point": seconds, "rows": rows}
    out = folder / "threads.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    columns = {**idle, **busy}
    print(f"\nload average before: {load_before:.2f}; tokens/s")
    print("| model | " + " | ".join(heading for _, _, heading in columns.values()) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for row in rows:
        print(f"| {row['model']} | " + " | ".join(f"{row[column]:,.0f}" for column in columns) + " |")
    print(f"written to {out}")
    return result


if __name__ == "__main__":
    main()
