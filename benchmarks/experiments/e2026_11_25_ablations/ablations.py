r"""Ablations at equal wall clock: `textlstm train` variants on tiny Shakespeare, each given the same
minutes on one pinned core.

    python -m benchmarks.experiments.e2026_11_25_ablations.ablations --minutes 4 \
        --variant base= --variant ema="--ema 0.999" ...
    # print the table of what is recorded:
    python -m benchmarks.experiments.e2026_11_25_ablations.ablations --minutes 4 --table

Each variant is the default command (`textlstm train --dataset tinyshakespeare --max-minutes M
--threads 1`) with the settings the recorded runs had (FROZEN: the defaults of commit 758ede3, which
later defaults differ from), plus its extra options, which win over them. Two run at once, side by
side, each pinned with `taskset` to a core of its own, with OMP_NUM_THREADS=1 (the issue measured its
baselines the same way); nothing else should run meanwhile. The figure is the best validation loss of
the run (nats per character, whatever the tokenizer, on nanoGPT's validation split, the full 111,542
characters), from the run's metrics.jsonl. Results are appended to ablations.jsonl beside this
script, one line per run, with the load average around it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.heldout.run import job_environment

RESULTS = Path(__file__).resolve().parent / "ablations.jsonl"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--dataset", default="tinyshakespeare")
    parser.add_argument("--variant", action="append", default=[], help='NAME="extra options" (NAME= for none)')
    parser.add_argument("--parallel", type=int, default=2, choices=[1, 2])
    parser.add_argument("--cores", default="0,1", help="cores to pin the runs of a pair to, comma-separated")
    parser.add_argument(
        "--dataset-for", action="append", default=[], help="NAME=DATASET: another dataset for one variant"
    )
    parser.add_argument("--work", default="/tmp/ablations", help="folder for the runs' checkpoints")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON-lines file runs are appended to")
    parser.add_argument("--table", action="store_true", help="only print the table of the recorded runs")
    return parser.parse_args()


# The settings the recorded runs had, then the defaults (commit 758ede3): the shape and evaluation spacing
# (before the planner chose them), the batch and rate, the tokenizer and weight decay that auto chose, AR/TAR
# off, patience 3. A variant changes one thing, so nothing else may be chosen for it. The dropouts are left
# to each variant: auto then gave the 4-minute runs 0 / 0 (5.1 expected epochs), which `--dropout 0
# --recurrent-dropout 0` now gives (auto has since changed).
FROZEN = (
    "--embedding-size",
    "64",
    "--hidden-size",
    "256",
    "--layers",
    "2",
    "--eval-every",
    "500",
    "--batch-size",
    "16",
    "--lr",
    "0.004",
    "--tokenizer",
    "char",
    "--weight-decay",
    "0.01",
    "--ar",
    "0",
    "--tar",
    "0",
    "--patience",
    "3",
)


def command(dataset: str, minutes: float, extra: str, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "textlstm",
        "train",
        "--dataset",
        dataset,
        "--max-minutes",
        str(minutes),
        "--threads",
        "1",
        "--output",
        str(output),
        "--overwrite",
        *FROZEN,
        *shlex.split(extra),
    ]


def best_record(folder: Path) -> dict:
    """The run's best evaluation, in nats per character (per token differs between tokenizers)."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for record in records:
        record["nats_per_char"] = record["valid_bits_per_char"] * math.log(2)
    best = min(records, key=lambda record: record["nats_per_char"])
    return {
        "best_valid_loss": best["nats_per_char"],
        "best_step": best["step"],
        "steps": records[-1]["step"],
        "last_valid_loss": records[-1]["nats_per_char"],
        "last_train_loss": records[-1].get("train_loss"),
        "tokens_per_sec": records[-1].get("tokens_per_sec"),
    }


def run_pair(jobs: list[tuple[str, str]], args: argparse.Namespace) -> None:
    environment = job_environment()  # one thread, passive OpenMP waiting, offline: as the held-out jobs run
    load_before = os.getloadavg()
    started = time.time()
    running = []
    cores = args.cores.split(",")
    datasets = dict(spec.split("=", 1) for spec in args.dataset_for)
    for core, (name, extra) in zip(cores, jobs):
        output = Path(args.work) / name
        dataset = datasets.get(name, args.dataset)
        log = open(Path(args.work) / f"{name}.log", "w")
        process = subprocess.Popen(
            ["taskset", "-c", str(core), *command(dataset, args.minutes, extra, output)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        running.append((name, extra, output, process, core, dataset))
    for name, extra, output, process, core, dataset in running:
        code = process.wait()
        record = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "name": name,
            "options": extra,
            "dataset": dataset,
            "minutes": args.minutes,
            "core": core,
            "exit": code,
            "wall_sec": round(time.time() - started, 1),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "beside": [other[0] for other in running if other[0] != name],
        }
        if code == 0:
            record.update(best_record(output))
        print(json.dumps(record), flush=True)
        with args.results.open("a") as results:
            results.write(json.dumps(record) + "\n")


def print_table(results: Path, minutes: float) -> None:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    rows = [row for row in rows if row["minutes"] == minutes and row["exit"] == 0]
    print("| variant | dataset | extra options | best valid nats/char | steps | best at | load before |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for row in sorted(rows, key=lambda row: row["best_valid_loss"]):
        load = "/".join(f"{value:.1f}" for value in row["load_before"])
        options = row["options"] or "(defaults)"
        print(
            f"| {row['name']} | {row['dataset']} | `{options}` | {row['best_valid_loss']:.4f} | {row['steps']:,} | "
            f"{row['best_step']:,} | {load} |"
        )


def main() -> None:
    args = parse_args()
    if args.table:
        print_table(args.results, args.minutes)
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    variants = [tuple(spec.split("=", 1)) if "=" in spec else (spec, "") for spec in args.variant]
    for start in range(0, len(variants), args.parallel):
        run_pair(variants[start : start + args.parallel], args)
    print_table(args.results, args.minutes)


if __name__ == "__main__":
    main()
