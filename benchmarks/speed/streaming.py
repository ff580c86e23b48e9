"""Does `--streaming` train on a corpus of many GB in bounded memory, leaving nothing of its size on disk?

Writes a jsonl file of GIGABYTES GB (documents of 2,000 characters cut from tinyshakespeare at
varying offsets) in a temporary folder, then runs

    /usr/bin/time -v textlstm train --dataset FILE --streaming --max-steps 200 --output RUN

with fresh TEXTLSTM_CACHE, HF_HOME and HF_DATASETS_CACHE folders inside that temporary folder, and
records GNU time's maximum resident set size, the wall time, `du` of the cache folders and of the
run folder, and the load average. The temporary folder (the big file included) is deleted afterwards.

    python -m benchmarks.speed.streaming [--gigabytes 5] [--steps 200]
    python -m benchmarks.speed.streaming --quick    # a 2 MB file, 2 steps

Writes benchmarks/results/streaming.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed.common import REPO, RESULTS, add_quick_options, output_folder
from benchmarks.speed.common import SHAKESPEARE as SOURCE

DOC_CHARS = 2000


def write_corpus(path: Path, gigabytes: float) -> int:
    """A jsonl file of about `gigabytes` GB; returns its size in bytes."""
    text = SOURCE.read_text(encoding="utf-8")
    docs = [json.dumps(text[start : start + DOC_CHARS]) for start in range(0, len(text) - DOC_CHARS, 997)]
    target = int(gigabytes * 1e9)
    written, n = 0, 0
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as out:
        while written < target:
            lines = []
            for doc in docs:
                lines.append(f'{{"id": {n}, "text": {doc}}}\n')
                n += 1
            block = "".join(lines)
            out.write(block)
            written += len(block.encode("utf-8"))
    return path.stat().st_size


def du_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--steps", type=int, default=200)
    add_quick_options(parser, "a 2 MB file and 2 steps", "benchmarks/results/streaming.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.gigabytes, args.steps = 0.002, 2
    folder = output_folder(args.output_dir, args.quick) or RESULTS

    work = Path(tempfile.mkdtemp(prefix="textlstm-streaming-"))
    try:
        corpus = work / f"corpus-{args.gigabytes:g}GB.jsonl"
        start = time.perf_counter()
        size = write_corpus(corpus, args.gigabytes)
        write_sec = time.perf_counter() - start
        print(f"wrote {corpus} ({size / 1e9:.2f} GB) in {write_sec:.0f} s", flush=True)

        caches = {
            "TEXTLSTM_CACHE": work / "textlstm-cache",
            "HF_HOME": work / "hf",
            "HF_DATASETS_CACHE": work / "hf" / "datasets",
        }
        env = {**os.environ, **{name: str(path) for name, path in caches.items()}, "PYTHONPATH": str(REPO)}
        run = work / "run"
        command = [
            sys.executable,
            "-m",
            "textlstm",
            "train",
            "--dataset",
            str(corpus),
            "--streaming",
            "--max-steps",
            str(args.steps),
            "--output",
            str(run),
        ]
        load_before = os.getloadavg()
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
        train_sec = time.perf_counter() - start
        load_after = os.getloadavg()
        if result.returncode != 0:
            sys.exit(f"training failed:\n{result.stderr[-3000:]}")
        peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
        record = {
            "corpus_bytes": size,
            "steps": args.steps,
            "command": f"textlstm train --dataset FILE --streaming --max-steps {args.steps} --output RUN",
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "train_wall_sec": round(train_sec, 1),
            "write_corpus_sec": round(write_sec, 1),
            "cache_bytes": {name: du_bytes(path) for name, path in caches.items() if name != "HF_DATASETS_CACHE"},
            "run_folder_bytes": du_bytes(run),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in load_after],
            "cpu_count": os.cpu_count(),
            "last_lines": [
                line.strip()
                for line in (result.stdout + result.stderr).splitlines()
                if line.startswith(("final", "done", "tokens:", "tokenizer:"))
            ],
        }
        folder.mkdir(exist_ok=True)
        (folder / "streaming.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record, indent=2))
        print(f"written to {folder / 'streaming.json'}")
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
