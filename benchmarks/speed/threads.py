"""Training tokens/s at 1 and 2 torch threads, for small and large models, with and without a busy neighbour.

Each measurement runs in a fresh process, so OMP_NUM_THREADS and OMP_WAIT_POLICY are read by OpenMP
when torch loads, as they are for a user. A "busy" run has another process spinning on one core
(what a second job, a browser or a test suite does to a 2-core machine).

    python benchmarks/bench_threads.py            # writes benchmarks/results/threads.json and prints a table
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchmarks.speed.common import REPO, RESULTS as RESULTS_FOLDER

RESULTS = RESULTS_FOLDER / "threads.json"

# name: (vocab, embedding, hidden, layers, batch, seq_len)
SHAPES = {
    "char 2x128 (emb 64, batch 32x64)": (67, 64, 128, 2, 32, 64),
    "char 2x256 (emb 64, batch 64x128)": (67, 64, 256, 2, 64, 128),
    "char 2x512 (emb 128, batch 32x64)": (67, 128, 512, 2, 32, 64),
    "word 2x650 (emb 650, batch 32x35, vocab 10k)": (10_000, 650, 650, 2, 32, 35),
}

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
print(json.dumps({"tokens_per_sec": steps * batch * seq / (time.perf_counter() - start), "threads": torch.get_num_threads()}))
"""


def measure(shape, threads: int, policy: str | None, seconds: float) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(shape), str(seconds)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["tokens_per_sec"]


def spinner() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(seconds: float = 15.0) -> None:
    rows = []
    load_before = os.getloadavg()[0]
    for name, shape in SHAPES.items():
        row = {"model": name}
        for threads in (1, 2):
            row[f"idle_{threads}t"] = measure(shape, threads, "PASSIVE", seconds)
        busy = spinner()
        try:
            time.sleep(1)
            for threads, policy in ((1, "PASSIVE"), (2, "PASSIVE"), (2, None)):
                row[f"busy_{threads}t_{(policy or 'default').lower()}"] = measure(shape, threads, policy, seconds)
        finally:
            busy.kill()
            busy.wait()
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"load_average_before": load_before, "cpus": os.cpu_count(), "seconds_per_point": seconds, "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload average before: {load_before:.2f}; tokens/s")
    print("| model | idle 1 thread | idle 2 threads | busy 1 thread | busy 2 threads PASSIVE | busy 2 threads default wait |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['model']} | {r['idle_1t']:,.0f} | {r['idle_2t']:,.0f} | {r['busy_1t_passive']:,.0f} | "
              f"{r['busy_2t_passive']:,.0f} | {r['busy_2t_default']:,.0f} |")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 15.0)
