"""The held-out table: textlstm and two classic baselines, each trained for the same wall-clock
minutes on one thread pinned to one core, scored in bits per character on each corpus's test split.

    python -m benchmarks.heldout.run --minutes 10                  # all corpora, all systems, cores 0 and 1
    python -m benchmarks.heldout.run --minutes 10 --textlstm-args bpe="--tokenizer bpe"

Corpora: the seven of benchmarks/corpora/first_seven.py and the large ones of benchmarks/corpora/ (built under
--data first if missing). Systems:

    textlstm          python -m textlstm train --dataset FOLDER --max-minutes M --threads 1 --output DIR
                      (its defaults otherwise), then python -m textlstm eval --checkpoint DIR --split test
                      --precision float32 --json
    word-lstm         benchmarks/baselines/word_lstm_capped.py (a 2-layer word LSTM capped at 10,000 words:
                      the baseline of the tables before the example's own recipe, word-closed and word-open)
    char-transformer  benchmarks/baselines/char_transformer.py (nanoGPT's shakespeare_char CPU setting)
    word-closed       python -m benchmarks.baselines.word_lstm --vocabulary closed: PyTorch's
                      word_language_model example as its main.py trains it, its dictionary over all splits
    word-open         the same with --vocabulary open: the training words, <unk> for the rest, an unknown
                      test word's spelling paid under a character 7-gram model (benchmarks/baselines/)
    NAME              each --textlstm-args NAME="ARGS": textlstm train with ARGS added

A variant with --tokenizer word does not compare: textlstm eval charges a word its tokenizer does
not know only the probability of the unknown token, not its spelling (word-lstm charges both).

Each job runs as `taskset -c K ...` with OMP_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE, on a core of
--cores of its own, at most --parallel at once. The load average before and after each job, its
wall time and its test bits/char go to --results (benchmarks/results/heldout.json); the table (one
row per corpus, one column per system) is printed as markdown. Run it on an otherwise idle machine:
the systems share nothing but the clock, so a loaded core shortchanges whoever runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.corpora.build import CORPORA, DEFAULT_OUT, SPLITS, build
from textlstm.hardware.device import device_name

BENCHMARKS = Path(__file__).resolve().parents[1]
REPO = BENCHMARKS.parent
BASELINES = {  # run as python -m MODULE ARGS from the repository root
    "word-lstm": ["benchmarks.baselines.word_lstm_capped"],
    "char-transformer": ["benchmarks.baselines.char_transformer"],
    "word-closed": ["benchmarks.baselines.word_lstm", "--vocabulary", "closed"],
    "word-open": ["benchmarks.baselines.word_lstm", "--vocabulary", "open"],
}
SYSTEMS = ("textlstm", *BASELINES)
DEFAULT_WORK = Path("~/.cache/textlstm/heldout-runs").expanduser()
DEFAULT_RESULTS = BENCHMARKS / "results" / "heldout.json"


def job_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def commands_for(system: str, extra_args: list[str], folder: Path, minutes: float, run_dir: Path) -> list[list[str]]:
    """The commands of one job, run one after another; the last one prints the result JSON."""
    python = sys.executable
    baseline_args = ["--data", str(folder), "--minutes", f"{minutes:g}", "--out", str(run_dir / "result.json")]
    if system in BASELINES:
        module, *args = BASELINES[system]
        return [[python, "-m", module, *args, *baseline_args]]
    train = [
        python,
        "-m",
        "textlstm",
        "train",
        "--dataset",
        str(folder),
        "--max-minutes",
        f"{minutes:g}",
        "--threads",
        "1",
        "--output",
        str(run_dir / "checkpoint"),
        "--overwrite",
        *extra_args,
    ]
    score = [
        python,
        "-m",
        "textlstm",
        "eval",
        "--checkpoint",
        str(run_dir / "checkpoint"),
        "--split",
        "test",
        "--precision",
        "float32",
        "--json",
    ]  # as the recorded figures were scored
    return [train, score]


def last_json_line(text: str) -> dict:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


def without_machine_paths(text: str, work: Path) -> str:
    """`text` as the results record it, naming no path of the machine it ran on: `python` for this
    interpreter, RUNS for the --work folder, ~ for the home folder."""
    for path, name in ((sys.executable, "python"), (str(work), "RUNS"), (str(Path.home()), "~")):
        text = text.replace(json.dumps(path)[1:-1], name)
    return text


def run_job(corpus: str, system: str, commands: list[list[str]], core: int, run_dir: Path) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"corpus": corpus, "system": system, "core": core, "load_before": os.getloadavg(), "commands": []}
    started = time.monotonic()
    with open(run_dir / "log.txt", "w") as log:
        for command in commands:
            pinned = ["taskset", "-c", str(core), *command]
            log.write("$ " + shlex.join(pinned) + "\n")
            log.flush()
            step_started = time.monotonic()
            done = subprocess.run(
                pinned, env=job_environment(), cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True
            )
            log.write(done.stdout)
            record["commands"].append(
                {"command": shlex.join(pinned), "seconds": round(time.monotonic() - step_started, 1)}
            )
            if done.returncode != 0:
                record["error"] = f"exit status {done.returncode}: see {run_dir / 'log.txt'}"
                break
    record["wall_seconds"] = round(time.monotonic() - started, 1)
    record["load_after"] = os.getloadavg()
    if "error" not in record:
        try:
            result = last_json_line(done.stdout)
            record["test_bits_per_char"] = result.get("test_bits_per_char", result.get("bits_per_char"))
            record["result"] = result
        except ValueError as error:
            record["error"] = f"{error}: see {run_dir / 'log.txt'}"
    print(
        f"{corpus} / {system} on core {core}: {record.get('test_bits_per_char', record.get('error'))}"
        f" ({record['wall_seconds']} s, load {record['load_before'][0]:.2f} -> {record['load_after'][0]:.2f})",
        flush=True,
    )
    return record


def markdown_table(records: list[dict], corpora: list[str], systems: list[str], minutes: float) -> str:
    cell = {(r["corpus"], r["system"]): r for r in records}
    lines = [
        f"| test bits/char, {minutes:g} min, 1 thread | " + " | ".join(systems) + " |",
        "|---|" + "---:|" * len(systems),
    ]
    for corpus in corpora:
        values = []
        for system in systems:
            record = cell.get((corpus, system))
            bits = record.get("test_bits_per_char") if record else None
            values.append(f"{bits:.3f}" if bits is not None else "failed" if record else "-")
        lines.append(f"| {corpus} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def parse_variants(values: list[str]) -> dict[str, list[str]]:
    variants = {}
    for value in values:
        name, equals, args = value.partition("=")
        if not equals or not name or name in SYSTEMS:
            raise SystemExit(f'error: --textlstm-args wants NAME="ARGS" with a new NAME, not {value!r}')
        variants[name] = shlex.split(args)
    return variants


def ensure_corpora(data: Path, corpora: list[str]) -> list[str]:
    missing = [c for c in corpora if not all((data / c / f"{s}.jsonl").is_file() for s in SPLITS)]
    if missing:
        build(data, tuple(missing))
    available = [c for c in corpora if (data / c / "test.jsonl").is_file()]
    return available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock minutes of training per job")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA))
    parser.add_argument(
        "--systems",
        nargs="+",
        default=None,
        help=f"of {', '.join(SYSTEMS)} and the --textlstm-args names (default: all of them)",
    )
    parser.add_argument(
        "--textlstm-args",
        action="append",
        default=[],
        metavar='NAME="ARGS"',
        help="an extra textlstm system NAME: textlstm train with ARGS added (repeatable)",
    )
    parser.add_argument("--parallel", type=int, default=2, help="jobs at once, each on its own core")
    parser.add_argument("--cores", default="0,1", help="cores to pin jobs to, comma-separated (default 0,1)")
    parser.add_argument("--data", type=Path, default=DEFAULT_OUT, help=f"corpus folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help=f"run folders and logs (default {DEFAULT_WORK})"
    )
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="result JSON file")
    args = parser.parse_args()

    variants = parse_variants(args.textlstm_args)
    systems = args.systems or [*SYSTEMS, *variants]
    unknown = [s for s in systems if s not in SYSTEMS and s not in variants]
    if unknown:
        raise SystemExit(f"error: unknown system {', '.join(unknown)} (known: {', '.join([*SYSTEMS, *variants])})")
    try:
        cores = [int(core) for core in args.cores.split(",")]
    except ValueError:
        raise SystemExit(f"error: --cores wants core numbers separated by commas, not {args.cores!r}") from None
    if args.minutes <= 0 or args.parallel < 1 or args.parallel > len(cores):
        raise SystemExit("error: --minutes must be positive and --parallel between 1 and the number of --cores")
    data, work = args.data.expanduser(), args.work.expanduser()
    corpora = ensure_corpora(data, args.corpora)

    free_cores: queue.Queue[int] = queue.Queue()
    for core in cores[: args.parallel]:
        free_cores.put(core)

    def job(corpus: str, system: str) -> dict:
        core = free_cores.get()
        try:
            run_dir = work / corpus / system
            commands = commands_for(system, variants.get(system, []), data / corpus, args.minutes, run_dir)
            return run_job(corpus, system, commands, core, run_dir)
        finally:
            free_cores.put(core)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [pool.submit(job, corpus, system) for corpus in corpora for system in systems]
        records = [future.result() for future in futures]

    manifest_path = data / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    sizes = {
        c: {s: {k: v for k, v in manifest.get(c, {}).get(s, {}).items() if k != "names"} for s in SPLITS}
        for c in corpora
    }
    results = {
        "minutes": args.minutes,
        "systems": systems,
        "corpora": corpora,
        "corpus_sizes": sizes,
        "textlstm_variants": {name: shlex.join(v) for name, v in variants.items()},
        "cores": cores[: args.parallel],
        "parallel": args.parallel,
        "machine": platform.platform(),
        "cpu": device_name("cpu"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "jobs": records,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(without_machine_paths(json.dumps(results, indent=1), work) + "\n")
    print(markdown_table(records, corpora, systems, args.minutes))
    if any("error" in record for record in records):
        sys.exit(1)


if __name__ == "__main__":
    main()
