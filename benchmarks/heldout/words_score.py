"""Are a model's samples made of real words? (issue 10's bar for the default `textlstm train` run)

    python -m benchmarks.heldout.words_score checkpoints/RUN          # default prompts, seeds 1-3, temperature 0.8
    python -m benchmarks.heldout.words_score checkpoints/RUN --show   # and print the samples

Samples a continuation of each prompt with each seed (random stream seed * 1000 + the prompt's
number), takes the words of three or more letters (runs of ASCII letters) of the continuations, and
counts the fraction found in an English word list
(/usr/share/dict/words, Debian's wamerican: `apt-get install wamerican`) or among the words of the
checkpoint's own training text, case-insensitively. The bar: at least 0.85.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from textlstm.data.corpora import load_corpus
from textlstm.generation.generator import load
from textlstm.runs.checkpoint import load_config

WORD_LIST = Path("/usr/share/dict/words")
PROMPTS = ("The with statement", "A list is", "If the file", "This module provides", "The function returns")
WORD = re.compile(r"[A-Za-z]+")
BAR = 0.85


def words_of(text: str) -> list[str]:
    return [word.lower() for word in WORD.findall(text) if len(word) >= 3]


def known_words(checkpoint: Path) -> set[str]:
    """The word list's words and the training text's, lower-cased."""
    if not WORD_LIST.is_file():
        sys.exit(f"error: {WORD_LIST} not found: install an English word list (apt-get install wamerican)")
    known = {line.strip().lower() for line in WORD_LIST.read_text(encoding="utf-8", errors="replace").splitlines()}
    data = load_config(checkpoint).data
    corpus = load_corpus(
        data.dataset,
        config=data.dataset_config,
        split=data.split,
        valid_split=data.valid_split,
        text_column=data.text_column,
    )
    for row in corpus.train:
        known.update(word.lower() for word in WORD.findall(row["text"]))
    return known


def score(
    checkpoint: Path,
    prompts=PROMPTS,
    seeds=(1, 2, 3),
    temperature: float = 0.8,
    max_tokens: int = 400,
    show: bool = False,
) -> dict:
    known = known_words(checkpoint)
    generator = load(checkpoint)
    sampled, unknown = [], []
    for number, prompt in enumerate(prompts):
        for seed in seeds:
            # One random stream per prompt and seed: with one stream for all prompts, the samples
            # of one seed ran into the same text after a few words.
            text = generator.generate(prompt, temperature=temperature, max_tokens=max_tokens, seed=seed * 1000 + number)
            if show:
                print(f"--- {prompt!r}, seed {seed}\n{prompt}{text}\n")
            words = words_of(text)
            sampled += words
            unknown += [word for word in words if word not in known]
    fraction = 1 - len(unknown) / len(sampled) if sampled else 0.0
    return {
        "checkpoint": str(checkpoint),
        "words": len(sampled),
        "real_fraction": round(fraction, 4),
        "temperature": temperature,
        "seeds": list(seeds),
        "prompts": list(prompts),
        "max_tokens": max_tokens,
        "unknown_examples": sorted(set(unknown))[:30],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=400, help="tokens sampled per prompt and seed")
    parser.add_argument("--show", action="store_true", help="print the samples")
    args = parser.parse_args()
    result = score(
        args.checkpoint, seeds=args.seeds, temperature=args.temperature, max_tokens=args.max_tokens, show=args.show
    )
    print(json.dumps(result))
    verdict = "meets" if result["real_fraction"] >= BAR else "misses"
    print(
        f"{result['real_fraction']:.1%} of {result['words']} sampled words are real: {verdict} the {BAR:.0%} bar",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
