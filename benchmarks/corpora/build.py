"""Build held-out corpora by name, the large ones of this package and the seven of benchmarks/first_seven.py:

    python -m benchmarks.corpora.build [NAME ...] [--out ~/.cache/textlstm/heldout]

from the repository root. Without a NAME it builds the large corpora. Each is written as
first_seven.py writes its own (OUT/NAME/{train,validation,test}.jsonl, split 90/5/5 by a stable
hash of each document's name) and listed in OUT/manifest.json with its sizes; a large corpus's entry
also has the distinct whitespace-separated words of each split. A corpus whose source is not installed
is skipped with the command that installs it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.corpora import first_seven, french_docs, go_source, linux_source
from benchmarks.corpora.documents import MIN_TRAIN_CHARS, Document, capped_by_training, unique, word_types
from benchmarks.corpora.first_seven import DEFAULT_OUT, SPLITS, write_corpus


@dataclass(frozen=True)
class LargeCorpus:
    documents: Callable[[], list[Document] | None]  # None when its source is not installed
    needs: str  # what installs the source


LARGE_CORPORA = {
    "linux-docs": LargeCorpus(linux_source.documentation_documents, linux_source.NEEDS),
    "linux-c": LargeCorpus(linux_source.c_documents, linux_source.NEEDS),
    "go-source": LargeCorpus(go_source.go_documents, go_source.NEEDS),
    "french-docs": LargeCorpus(french_docs.french_documents, french_docs.NEEDS),
}
CORPORA = (*first_seven.CORPORA, *LARGE_CORPORA)


def build_large(folder: Path, corpus: LargeCorpus) -> dict | None:
    """Write one large corpus into `folder`; its manifest entry, or None when its source is missing."""
    documents = corpus.documents()
    if documents is None:
        return None
    documents = capped_by_training(unique(documents))
    sizes = write_corpus(folder, documents)
    texts = dict(documents)
    for split in SPLITS:
        sizes[split]["word_types"] = word_types(texts[name] for name in sizes[split]["names"])
    return sizes


def summary(name: str, sizes: dict) -> str:
    counts = ", ".join(f"{split} {s['documents']:,} docs {s['chars']:,} chars" for split, s in sizes.items())
    words = f", {sizes['train']['word_types']:,} word types in train" if "word_types" in sizes["train"] else ""
    return f"{name}: {counts}{words}"


def build(out: Path, corpora: tuple[str, ...] = CORPORA) -> dict:
    """Write the named corpora under `out`, print their sizes, and return the manifest (also written there)."""
    unknown = [name for name in corpora if name not in CORPORA]
    if unknown:
        raise SystemExit(f"error: unknown corpus {', '.join(unknown)} (known: {', '.join(CORPORA)})")
    small = tuple(name for name in corpora if name in first_seven.CORPORA)
    if small:
        first_seven.build(out, small)
    out.mkdir(parents=True, exist_ok=True)
    written = out / "manifest.json"
    manifest = json.loads(written.read_text()) if written.is_file() else {}  # the corpora not rebuilt stay listed
    for name in (name for name in corpora if name in LARGE_CORPORA):
        sizes = build_large(out / name, LARGE_CORPORA[name])
        if sizes is None:
            print(f"{name}: skipped, its source is missing (needs {LARGE_CORPORA[name].needs})")
            continue
        manifest[name] = sizes
        print(summary(name, sizes))
        if sizes["train"]["chars"] < MIN_TRAIN_CHARS:
            print(
                f"{name}: only {sizes['train']['chars']:,} training characters, fewer than the "
                f"{MIN_TRAIN_CHARS:,} it is meant to have (is its source installed whole?)"
            )
        written.write_text(json.dumps(manifest, indent=1) + "\n")  # after each: a long build keeps what it did
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", nargs="*", metavar="NAME", help=f"of {', '.join(CORPORA)} (default: the large ones)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    build(args.out.expanduser(), tuple(args.corpora) or tuple(LARGE_CORPORA))


if __name__ == "__main__":
    main()
