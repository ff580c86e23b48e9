"""Does a corpus far larger than memory train in bounded memory? (issue #5)

Repeats tinyshakespeare into a 1 GB text file under /tmp (once), then runs

    textlstm train --dataset /tmp/textlstm-scale/shakespeare-1000MB.txt --tokenizer char --max-steps 100 \
        --hidden-size 128 --batch-size 32 --eval-tokens 131072 ...

(a small model and a short evaluation: the data path is what is measured) as a subprocess with
fresh TEXTLSTM_CACHE and HF_DATASETS_CACHE folders under /tmp. While it runs, the resident memory
of its whole process tree is sampled from /proc, and the phases are timed by watching the cache:
the tokenizer file appears when the tokenizer is trained, the ids' `valid.json` when both splits
are encoded, so "tokenization" is everything from the start to the ids on disk (reading the text
into Arrow, fingerprinting, training the tokenizer, encoding). GNU time's maximum resident set
size (/usr/bin/time -v) is recorded next to the sampled peak.

    python -m benchmarks.speed.scale [--megabytes 1000] [--steps 100] [--keep]
    python -m benchmarks.speed.scale --quick    # a 2 MB file in a temporary folder, 2 steps

Writes benchmarks/results/scale.json and benchmarks/results/scale.md. Without --keep, the caches
(and the big file) are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed.common import REPO, RESULTS, add_quick_options, output_folder
from benchmarks.speed.common import SHAKESPEARE as SOURCE

WORK = Path("/tmp/textlstm-scale")
EVAL_TOKENS = 131_072
MEMORY_BOUND_MB = 2048
SAMPLE_EVERY_SEC = 0.2


def make_big_file(megabytes: int, work: Path) -> Path:
    path = work / f"shakespeare-{megabytes}MB.txt"
    if path.is_file() and path.stat().st_size >= megabytes * 1_000_000:
        return path
    work.mkdir(parents=True, exist_ok=True)
    text = SOURCE.read_bytes()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        while out.tell() < megabytes * 1_000_000:
            out.write(text)
    tmp.rename(path)
    return path


def tree_rss_mb(root_pid: int) -> tuple[float, float]:
    """Resident memory (all, and anonymous only) of a process and all its descendants, from /proc.

    All resident memory includes the pages of memory-mapped files that were read (the Arrow text,
    the token ids): the kernel can drop those at will, anonymous memory it cannot.
    """
    total_kb, anon_kb, pending = 0, 0, [root_pid]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total_kb += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) if "VmRSS" in status else 0
            anon_kb += int(re.search(r"RssAnon:\s+(\d+)", status).group(1)) if "RssAnon" in status else 0
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total_kb / 1024, anon_kb / 1024


def first_match(folder: Path, pattern: str) -> bool:
    return any(folder.glob(pattern))


def run(megabytes: int, steps: int, keep: bool, work: Path = WORK, eval_tokens: int = EVAL_TOKENS) -> dict:
    corpus = make_big_file(megabytes, work)
    size_mb = corpus.stat().st_size / 1e6
    caches = Path(tempfile.mkdtemp(prefix="caches-", dir=work))
    env = {
        **os.environ,
        "TEXTLSTM_CACHE": str(caches / "textlstm"),
        "HF_DATASETS_CACHE": str(caches / "hf-datasets"),
        "HF_HUB_OFFLINE": "1",
    }
    output = caches / "run"
    command = [
        "textlstm",
        "train",
        "--dataset",
        str(corpus),
        "--tokenizer",
        "char",
        "--max-steps",
        str(steps),
        "--output",
        str(output),
        "--eval-every",
        str(steps),
        # A small model and a short evaluation: this measures the data path, not the model's speed.
        "--hidden-size",
        "128",
        "--batch-size",
        "32",
        "--eval-tokens",
        str(eval_tokens),
    ]
    textlstm = [sys.executable, "-m", "textlstm"]  # the textlstm of this Python
    time_log, run_log = caches / "time.txt", caches / "train.log"
    started = time.perf_counter()
    with open(run_log, "w") as log_file:
        process = subprocess.Popen(
            ["/usr/bin/time", "-v", "-o", str(time_log), *textlstm, *command[1:]],
            env=env,
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    marks: dict[str, float] = {}
    peak_mb, peak_anon_mb, peak_phase, peak_anon_phase = 0.0, 0.0, "", ""
    while process.poll() is None:
        elapsed = time.perf_counter() - started
        if "tokenizer" not in marks and first_match(caches / "textlstm", "tokenizers/*.json"):
            marks["tokenizer"] = elapsed
        if "ids" not in marks and first_match(caches / "textlstm", "ids/*/valid.json"):
            marks["ids"] = elapsed
        rss, anon = tree_rss_mb(process.pid)
        phase = "training" if "ids" in marks else "encoding" if "tokenizer" in marks else "loading and tokenizer"
        if rss > peak_mb:
            peak_mb, peak_phase = rss, phase
        if anon > peak_anon_mb:
            peak_anon_mb, peak_anon_phase = anon, phase
        time.sleep(SAMPLE_EVERY_SEC)
    total = time.perf_counter() - started
    log = run_log.read_text(errors="replace")
    if process.returncode != 0:
        sys.exit(f"textlstm train failed ({process.returncode}):\n{log[-3000:]}")
    time_report = time_log.read_text()
    gnu_max_mb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_report).group(1)) / 1024
    tokens = re.search(r"tokens: ([\d,]+) train, ([\d,]+) validation", log)
    cache_bytes = sum(f.stat().st_size for f in caches.rglob("*") if f.is_file())
    ids = marks.get("ids", total)
    result = {
        "command": " ".join(command),
        "corpus_mb": round(size_mb, 1),
        "steps": steps,
        "train_tokens": int(tokens.group(1).replace(",", "")) if tokens else None,
        "valid_tokens": int(tokens.group(2).replace(",", "")) if tokens else None,
        "seconds_to_tokenizer": round(marks.get("tokenizer", float("nan")), 1),
        "seconds_to_ids": round(ids, 1),
        "tokenize_mb_per_sec": round(size_mb / ids, 2),
        # None when no sample fell between the tokenizer and the ids (a small file)
        "encode_mb_per_sec": round(size_mb / (ids - marks["tokenizer"]), 2)
        if ids > marks.get("tokenizer", ids)
        else None,
        "seconds_training_and_eval": round(total - ids, 1),
        "seconds_total": round(total, 1),
        "peak_tree_rss_mb": round(peak_mb, 1),
        "peak_phase": peak_phase,
        "peak_tree_anon_rss_mb": round(peak_anon_mb, 1),
        "peak_anon_phase": peak_anon_phase,
        "gnu_time_max_rss_mb": round(gnu_max_mb, 1),
        "under_bound": max(peak_mb, gnu_max_mb) < MEMORY_BOUND_MB,
        "cache_mb_on_disk": round(cache_bytes / 1e6, 1),
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "log_tail": log[-1500:],
    }
    if not keep:
        shutil.rmtree(caches, ignore_errors=True)
        corpus.unlink(missing_ok=True)
    return result


def write_results(result: dict, folder: Path = RESULTS) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    line = (
        f"| scale: {result['corpus_mb']:,.0f} MB .txt, char tokenizer, {result['steps']} steps | "
        f"tokenized at {result['tokenize_mb_per_sec']} MB/s ({result['seconds_to_ids']} s to ids on disk; "
        f"encoding alone {result['encode_mb_per_sec']} MB/s) | "
        f"peak RSS {max(result['peak_tree_rss_mb'], result['gnu_time_max_rss_mb']):,.0f} MB "
        f"(anonymous {result['peak_tree_anon_rss_mb']:,.0f} MB), {'under' if result['under_bound'] else 'OVER'} 2 GB | "
        f"training + evaluation {result['seconds_training_and_eval']} s | load {result['load_average'][0]:.2f} |"
    )
    # scale.md also tells how the figures got there: only its result line is replaced.
    page = folder / "scale.md"
    if page.is_file() and re.search(r"^\| scale:.*$", page.read_text(), flags=re.M):
        page.write_text(re.sub(r"^\| scale:.*$", lambda _: line, page.read_text(), count=1, flags=re.M))
    else:
        page.write_text(f"# Scale benchmark (`python -m benchmarks.speed.scale`)\n\n`{result['command']}`\n\n{line}\n")
    print(line)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the big file and the caches")
    parser.add_argument("--no-write", action="store_true", help="print the figures, do not write results/")
    add_quick_options(
        parser, "a 2 MB file in a temporary folder, 2 steps", "benchmarks/results/scale.json and scale.md"
    )
    args = parser.parse_args(argv)
    folder = output_folder(args.output_dir, args.quick)
    if args.quick:
        with tempfile.TemporaryDirectory() as work:
            result = run(2, 2, keep=False, work=Path(work), eval_tokens=4096)
    else:
        result = run(args.megabytes, args.steps, args.keep)
    print(json.dumps({k: v for k, v in result.items() if k != "log_tail"}, indent=2))
    if not args.no_write:
        write_results(result, folder or RESULTS)
    return result


if __name__ == "__main__":
    main()
