"""What the held-out baselines share: reading a corpus folder, counting its characters, the clock,
the validation checkpoints and the result file.

Characters are counted as textlstm counts them: the documents of a split, each followed by one
end-of-document symbol that counts as one character and whose prediction is scored. Bits per
character = total nats over the split / that count / ln 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

LN2 = math.log(2)


def read_split(folder: Path, split: str) -> list[str]:
    """The documents of `folder/split.jsonl` (one {"text": ...} per line)."""
    path = Path(folder) / f"{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (build it with benchmarks/corpora/first_seven.py)")
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line in lines if line.strip()]


def scored_chars(documents: list[str]) -> int:
    return sum(len(text) + 1 for text in documents)


def bits_per_char(total_nats: float, chars: int) -> float:
    return total_nats / chars / LN2


def unseen_char_nats(test_chars: set[str], known: set[str]) -> float:
    """Extra nats for naming which unseen character an unknown-character symbol stands for: uniform
    over the distinct characters of the test text that training never saw (0 when there is one)."""
    unseen = len(test_chars - known)
    return math.log(unseen) if unseen > 1 else 0.0


class Clock:
    """The training budget: `seconds` from now, with a validation check due every tenth of it."""

    def __init__(self, minutes: float, checks: int = 10):
        self.start = time.monotonic()
        self.seconds = minutes * 60
        self.check_every = self.seconds / checks
        self.next_check = self.check_every

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fraction(self) -> float:
        return min(1.0, self.elapsed() / self.seconds)

    def done(self) -> bool:
        return self.elapsed() >= self.seconds

    def check_due(self) -> bool:
        elapsed = self.elapsed()
        if elapsed < self.next_check:
            return False
        while self.next_check <= elapsed:  # a check that ran long does not make the next one due at once
            self.next_check += self.check_every
        return True


def set_one_thread(torch) -> None:
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)


def start_baseline(doc: str, valid_unit: str, torch) -> tuple[argparse.Namespace, list[str], list[str], list[str]]:
    """A baseline's command line (--data, --minutes, --out, --valid-UNIT, --seed), one thread, the seed
    set, and the corpus's train, validation and test documents."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="corpus folder with train/validation/test.jsonl")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock minutes of training")
    parser.add_argument("--out", type=Path, required=True, help="result JSON file")
    parser.add_argument(
        f"--valid-{valid_unit}",
        dest="valid_count",
        metavar="N",
        type=int,
        default=20_000,
        help=f"validation {valid_unit} scored at each check",
    )
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()
    if args.minutes <= 0:
        raise SystemExit("error: --minutes must be positive")
    set_one_thread(torch)
    torch.manual_seed(args.seed)
    return args, *(read_split(args.data, split) for split in ("train", "validation", "test"))


def write_result(path: Path, result: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)
    print(json.dumps({key: value for key, value in result.items() if not isinstance(value, (list, dict))}))
