"""The word LSTM of PyTorch's word_language_model example, trained as its main.py trains it, for a
wall-clock budget on a held-out corpus, scored in bits per character of the test split.

    python -m benchmarks.baselines.word_lstm --vocabulary closed --data ~/.cache/textlstm/heldout/german \\
        --minutes 15 --out result.json

Written from the example's code at pytorch/examples commit 77f55b912142e11fcfdf5b530231fb9c52f181e8
(EXAMPLE_COMMIT: word_language_model/main.py, model.py, data.py, README.md). The settings are
main.py's defaults: the model's are also those of the README's first command (`python main.py
--accel --epochs 6`), and the epochs are main.py's 40, a cap that only stops a run on a corpus
small enough for 40 epochs to fit in the budget. The README's larger settings (650 or 1500
units, dropout 0.5 or 0.65) it calls "slower but better"; on one CPU core in a budget of minutes a
model of 650 units would read a fraction of the text the default one reads (untried here).

- The network: word_model.py (LSTM, 2 x 200, embedding 200, dropout 0.2, output not tied).
- Words: words.py (`line.split() + ['<eos>']`, each document read as one line or more).
- Training (main.py's train() and its epoch loop): the training stream in 20 columns, truncated BPTT
  of 35 tokens with the state carried between steps and zeroed at the start of each epoch, the mean
  cross-entropy, gradients clipped to a total norm of 0.25, plain SGD (p -= lr * grad) at lr 20; at
  each epoch's end the whole validation split is scored (batch 10) and the learning rate divided by
  4 when that does not beat the best so far; at most 40 epochs (main.py's --epochs). Seed 1111.

The protocol, the same for every system of the held-out benchmark (benchmarks/heldout/run.py):

- Data preparation is outside the budget: reading the splits, the vocabulary, the ids and the
  spelling model come before the clock starts. The budget counts training and the validation at
  each epoch's end, as a run of main.py would.
- Training stops at the deadline, even in the middle of an epoch (the deadline is read before
  every step), or after 40 epochs.
- Then, outside the budget: of the model as it is at the end and the best epoch's checkpoint, the
  one with the lower validation loss is scored on the whole test split (the model at the end is
  scored on validation first unless it was scored at the end of its last epoch).
- Bits per character = summed test negative log-likelihood in nats / test characters / ln 2, the
  characters counted as benchmarks.heldout.protocol.scored_chars counts them for every system: each document's
  characters plus one for its end. The word model predicts every token of the stream `<eos>` +
  the test tokens (one `<eos>` of context first, as if the text followed a line end), each newline
  and document end being one `<eos>`; whitespace between words is not scored (words.py).

--vocabulary closed: the example's dictionary over train, validation and test (the optimistic bound:
no test word is unknown). --vocabulary open: the training words seen twice or more and <unk> for the
rest (words.py); each test token that is <unk> costs the LSTM's -log p(<unk>) plus -log of its
spelling under spelling.py's character 7-gram model fitted on the distinct training words (the
types: the words <unk> stands for are rare ones, whose spellings look like a list of distinct words
more than like running text, where short frequent words dominate; on the validation words of three
held-out corpora the types gave 0.04 to 0.11 bits per character less than the singletons, 0.2 to
0.3 less than the tokens). A character no training word holds costs the unseen symbol plus log(the number of such
distinct characters in the test words), as the other baselines charge it.

The result (the test bits per character, the training figures and the data's sizes) goes to --out as
JSON, and its scalar fields to stdout as one JSON line (what benchmarks/heldout/run.py reads).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.baselines.spelling import SpellingModel
from benchmarks.baselines.word_model import BPTT, WordLSTM, columns, stream_nats
from benchmarks.baselines.words import EOS, Vocabulary, closed_vocabulary, open_vocabulary, tokens_of
from benchmarks.heldout.protocol import (
    bits_per_char,
    read_split,
    scored_chars,
    set_one_thread,
    unseen_char_nats,
    write_result,
)

EXAMPLE_COMMIT = "77f55b912142e11fcfdf5b530231fb9c52f181e8"
EXAMPLE = f"https://github.com/pytorch/examples/tree/{EXAMPLE_COMMIT}/word_language_model"
LR, CLIP, BATCH, LR_DIVISOR, EPOCHS, SEED = 20.0, 0.25, 20, 4.0, 40, 1111
VOCABULARIES = ("closed", "open")


@dataclass
class PreparedData:
    vocabulary: Vocabulary
    train_ids: list[int]
    valid_ids: list[int]  # <eos> + the validation tokens: every token after the first is scored
    test_ids: list[int]  # <eos> + the test tokens
    test_unknown: list[str]  # the test tokens that are <unk>, in order (none in a closed vocabulary)
    spelling: SpellingModel | None  # the open vocabulary's spelling of an unknown word


def prepare(vocabulary_kind: str, train_docs: list[str], valid_docs: list[str], test_docs: list[str]) -> PreparedData:
    train_tokens, valid_tokens, test_tokens = (tokens_of(docs) for docs in (train_docs, valid_docs, test_docs))
    if vocabulary_kind == "closed":
        vocabulary, spelling = closed_vocabulary(train_tokens, valid_tokens, test_tokens), None
    else:
        vocabulary = open_vocabulary(train_tokens)
        train_words = {token for token in train_tokens if token != EOS}
        test_chars = {c for token in test_tokens if token != EOS for c in token}
        known_chars = {c for word in train_words for c in word}
        spelling = SpellingModel(train_words, unseen_char_nats=unseen_char_nats(test_chars, known_chars))
    train_ids, _ = vocabulary.encode(train_tokens)
    valid_ids, _ = vocabulary.encode([EOS, *valid_tokens])
    test_ids, test_unknown = vocabulary.encode([EOS, *test_tokens])
    return PreparedData(vocabulary, train_ids, valid_ids, test_ids, test_unknown, spelling)


def validation_loss(model: WordLSTM, valid_ids: list[int]) -> float:
    return stream_nats(model, valid_ids) / (len(valid_ids) - 1)


def train(model: WordLSTM, train_ids: list[int], valid_ids: list[int], seconds: float, clock=time.monotonic) -> dict:
    """Train to the deadline (or EPOCHS), then leave in `model` the better by validation loss of the
    model at the end and the best epoch's checkpoint; returns the training figures."""
    data = columns(train_ids, BATCH)
    if data.size(0) < 2:
        raise SystemExit(f"error: the training split is too short for one step of {BATCH} columns")
    started = clock()
    deadline = started + seconds
    lr, steps, epochs = LR, 0, []
    best_loss, best_weights = math.inf, None
    end_loss = None  # the validation loss of the model as it is now, once measured
    out_of_time = False
    for epoch in range(1, EPOCHS + 1):
        model.train()
        state = None
        for start in range(0, data.size(0) - 1, BPTT):
            if clock() >= deadline:
                out_of_time = True
                break
            inputs, targets = data[start : start + BPTT], data[start + 1 : start + 1 + BPTT]
            inputs = inputs[: len(targets)]
            if state is not None:
                state = tuple(s.detach() for s in state)
            model.zero_grad()
            logits, state = model(inputs, state)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(parameter.grad, alpha=-lr)
            steps += 1
            end_loss = None
        if out_of_time:
            break
        end_loss = validation_loss(model, valid_ids)
        epochs.append(
            {
                "epoch": epoch,
                "seconds": round(clock() - started, 1),
                "steps": steps,
                "valid_nats_per_token": end_loss,
                "lr": lr,
            }
        )
        if end_loss < best_loss:
            best_loss, best_weights = end_loss, copy.deepcopy(model.state_dict())
        else:
            lr /= LR_DIVISOR
    train_seconds = clock() - started
    if end_loss is None:
        end_loss = validation_loss(model, valid_ids)
    scored = "the model at the end"
    if best_loss < end_loss:
        model.load_state_dict(best_weights)
        scored = f"the checkpoint of epoch {min(epochs, key=lambda e: e['valid_nats_per_token'])['epoch']}"
    return {
        "steps": steps,
        "epochs_completed": len(epochs),
        "stopped_by": "deadline" if out_of_time else "epochs",
        "train_seconds": train_seconds,
        "train_tokens_per_epoch": data.numel(),
        "epochs": epochs,
        "end_valid_nats_per_token": end_loss,
        "scored": scored,
        "scored_valid_nats_per_token": min(best_loss, end_loss),
    }


def nats_on_test(model: WordLSTM, data: PreparedData) -> tuple[float, float]:
    """(the LSTM's nats over the test tokens, the nats of spelling its <unk> words)."""
    lstm_nats = stream_nats(model, data.test_ids)
    spelling_nats = sum(data.spelling.nats(word) for word in data.test_unknown) if data.spelling else 0.0
    return lstm_nats, spelling_nats


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--vocabulary",
        choices=VOCABULARIES,
        required=True,
        help="closed: the example's dictionary over all splits; open: training words and <unk>",
    )
    parser.add_argument("--data", type=Path, required=True, help="corpus folder with train/validation/test.jsonl")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock minutes of training")
    parser.add_argument("--out", type=Path, required=True, help="result JSON file")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED}, the example's)")
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error("--minutes must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(argv)
    started = time.monotonic()
    train_docs, valid_docs, test_docs = (read_split(args.data, split) for split in ("train", "validation", "test"))
    for name, docs in (("validation", valid_docs), ("test", test_docs)):
        if not docs:
            raise SystemExit(f"error: the {name} split of {args.data} has no documents")
    data = prepare(args.vocabulary, train_docs, valid_docs, test_docs)
    if len(data.train_ids) < 2 * BATCH:
        raise SystemExit(f"error: the training split of {args.data} is too short for one step of {BATCH} columns")
    prepare_seconds = time.monotonic() - started

    set_one_thread(torch)
    torch.manual_seed(args.seed)
    model = WordLSTM(data.vocabulary.size)
    training = train(model, data.train_ids, data.valid_ids, args.minutes * 60)

    started = time.monotonic()
    lstm_nats, spelling_nats = nats_on_test(model, data)
    chars = scored_chars(test_docs)
    write_result(
        args.out,
        {
            "system": f"word-{args.vocabulary}",
            "example": EXAMPLE,
            "data": str(args.data),
            "minutes": args.minutes,
            "vocabulary": args.vocabulary,
            "test_bits_per_char": bits_per_char(lstm_nats + spelling_nats, chars),
            "test_chars": chars,
            "test_tokens": len(data.test_ids) - 1,
            "test_unknown_words": len(data.test_unknown),
            "test_lstm_nats": lstm_nats,
            "test_spelling_nats": spelling_nats,
            "spelling_order": data.spelling.order if data.spelling else None,
            "prepare_seconds": prepare_seconds,
            "test_seconds": time.monotonic() - started,
            "vocabulary_size": data.vocabulary.size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seed": args.seed,
            **training,
        },
    )


if __name__ == "__main__":
    main()
