"""The runs the model-size rule is fitted on: each corpus x shape x token budget, trained for exactly
that many tokens (a step limit, so the load on the machine cannot change the loss), its best
validation loss recorded.

    python -m benchmarks.experiments.e2026_12_02_size_rule.fit_plan --runs   # train what is not recorded yet
    python -m benchmarks.experiments.e2026_12_02_size_rule.fit_plan --fit    # fit the rule (scipy); leave-one-out

--runs trains two at a time, each pinned to a core.

Each run is `textlstm train --dataset FOLDER --layers L --hidden-size H --embedding-size E --max-steps S
--threads 1 --patience 0` with the settings the recorded runs had (FROZEN: the defaults of commit 3e9ea56,
which later defaults differ from; settings.toml beside this script), pinned with taskset to a core of its
own. The corpora are the held-out ones (benchmarks/heldout_corpora.py). Results: plan_fit.jsonl beside this
script, one line per run.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.corpora.first_seven import CORPORA, DEFAULT_OUT
from benchmarks.heldout.run import job_environment

RESULTS = Path(__file__).resolve().parent / "plan_fit.jsonl"
TOKENS_PER_STEP = 16 * 64  # the default batch
SHAPES = {"2x256": (2, 256, 64), "2x512": (2, 512, 128)}  # name: (layers, hidden, embedding)
# Tokens per shape: about what 1.7 and 5 minutes of one core of this project's machine give each of
# them in bfloat16 (the larger shape's steps cost about four times as much).
TOKEN_BUDGETS = {"2x256": (2_000_000, 6_000_000), "2x512": (500_000, 1_500_000)}
# What the recorded runs had as defaults then and later defaults change: the tokenizer auto chose (char;
# the spacing rule came later), the batch and rate, AR/TAR on, weight decay 0.01, the evaluation spacing
# of a run without a time budget. The dropouts stay auto: the rule of the day (by expected epochs: 0 / 0
# up to 6, 0.1 / 0.1 up to 15, 0.3 / 0.1 beyond) is what each record's dropout field says it chose;
# settings.toml lists them, and a rerun today gets today's rule unless they are given.
FROZEN = (
    "--tokenizer",
    "char",
    "--batch-size",
    "16",
    "--lr",
    "0.004",
    "--ar",
    "2",
    "--tar",
    "1",
    "--weight-decay",
    "0.01",
    "--eval-every",
    "500",
)


def recorded(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []


def best_validation(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    best = min(records, key=lambda record: record["valid_bits_per_char"])
    return {
        "valid_bits_per_char": best["valid_bits_per_char"],
        "best_step": best["step"],
        "steps": records[-1]["step"],
        "epochs": records[-1]["epoch"],
        "tokens_per_sec": records[-1]["tokens_per_sec"],
    }


def train_one(corpus: str, shape: str, tokens: int, core: int, args: argparse.Namespace) -> dict:
    layers, hidden, embedding = SHAPES[shape]
    steps = tokens // TOKENS_PER_STEP
    output = args.work / corpus / f"{shape}-{tokens // 1000}k"
    command = [
        "taskset",
        "-c",
        str(core),
        sys.executable,
        "-m",
        "textlstm",
        "train",
        "--dataset",
        str(args.data / corpus),
        "--layers",
        str(layers),
        "--hidden-size",
        str(hidden),
        "--embedding-size",
        str(embedding),
        "--max-steps",
        str(steps),
        "--threads",
        "1",
        "--patience",
        "0",
        "--output",
        str(output),
        "--overwrite",
        *FROZEN,
    ]
    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output.parent / f"{output.name}.log", "w") as log:
        code = subprocess.run(command, env=job_environment(), stdout=log, stderr=subprocess.STDOUT).returncode
    record = {
        "corpus": corpus,
        "shape": shape,
        "layers": layers,
        "hidden": hidden,
        "embedding": embedding,
        "tokens": steps * TOKENS_PER_STEP,
        "exit": code,
        "wall_sec": round(time.monotonic() - started, 1),
    }
    if code == 0:
        record.update(best_validation(output))
        config = json.loads((output / "config.json").read_text())
        record["dropout"], record["recurrent_dropout"] = (
            config["model"]["dropout"],
            config["model"]["recurrent_dropout"],
        )
    print(json.dumps(record), flush=True)
    return record


def run_missing(args: argparse.Namespace) -> None:
    done = {(r["corpus"], r["shape"], r["tokens"]) for r in recorded(args.results) if r["exit"] == 0}
    jobs = [
        (c, s, t)
        for c in args.corpora
        for s in SHAPES
        for t in TOKEN_BUDGETS[s]
        if (c, s, (t // TOKENS_PER_STEP) * TOKENS_PER_STEP) not in done
    ]
    # Corpus by corpus, the longest first within each, so that what is recorded is whole corpora.
    jobs.sort(key=lambda job: (args.corpora.index(job[0]), -job[2] * SHAPES[job[1]][1] ** 2))
    cores: queue.Queue[int] = queue.Queue()
    for core in args.cores:
        cores.put(core)

    def job(corpus: str, shape: str, tokens: int) -> None:
        core = cores.get()
        try:
            record = train_one(corpus, shape, tokens, core, args)
            with args.results.open("a") as results:
                results.write(json.dumps(record) + "\n")
        finally:
            cores.put(core)

    with ThreadPoolExecutor(max_workers=len(args.cores)) as pool:
        for future in [pool.submit(job, *spec) for spec in jobs]:
            future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", action="store_true", help="train the runs not recorded yet")
    parser.add_argument("--fit", action="store_true", help="fit the rule on the recorded runs")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument("--cores", type=lambda text: [int(c) for c in text.split(",")], default=[0, 1])
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--work", type=Path, default=Path("~/.cache/textlstm/plan-fit").expanduser())
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if args.runs:
        run_missing(args)
    if args.fit:
        from .plan_rule_fit import report  # the fit needs scipy; the runs do not

        report(recorded(args.results), args.corpora)


if __name__ == "__main__":
    main()
