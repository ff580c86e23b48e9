"""Baseline for the held-out table: a plain 2-layer word LSTM with the classic recipe, one thread.

    python -m benchmarks.baselines.word_lstm_capped --data ~/.cache/textlstm/heldout/german --minutes 10 --out r.json

The recipe of PyTorch's word_language_model example, written from its description: embedding and
hidden size 200, 2 LSTM layers, dropout 0.2 (embeddings, between layers, before the output layer),
untied output layer, weights initialised uniform in +-0.1, plain SGD at lr 20, gradient norm clipped
to 0.25, truncated BPTT of 35 tokens over 20 parallel rows of the training stream, and the learning
rate divided by 4 whenever a validation check does not improve on the best so far.

Words: the regex tokens of WORD_PATTERN (runs of word characters, single other non-space characters,
newlines). Spaces, tabs and other whitespace between tokens are NOT modeled: they cost nothing,
which favours this baseline slightly on prose and more on Python source (indentation). Vocabulary:
the training words seen at least twice, the 10,000 most frequent, plus <unk> and <eos> (the end of
each document, scored and counted as one character, as textlstm counts it).

Unknown words pay honestly: each <unk> in the test text costs -log p(<unk>) from the LSTM plus the
cost of spelling the word with a character unigram model fitted on the training tokens (add-one
smoothed, with one end-of-word symbol per token and one unknown-character symbol; a character
training never saw also pays log(number of distinct such characters in the test text)).

Training runs until --minutes of wall clock are spent (the clock is read every step), with a check
on the first --valid-tokens tokens of the validation split every tenth of the budget and once at
the end; the weights of the best check are scored on the whole test split, as one stream in one row
(the state carried through from its start). Result: bits per character on test (total nats / test
characters / ln 2) and the training figures, as JSON in --out.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.heldout.protocol import (
    Clock,
    bits_per_char,
    scored_chars,
    start_baseline,
    unseen_char_nats,
    write_result,
)

WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\n")
UNK, EOS = "<unk>", "<eos>"
MIN_COUNT, MAX_WORDS = 2, 10_000
EMBEDDING = HIDDEN = 200
LAYERS, DROPOUT = 2, 0.2
LR, CLIP, BPTT, BATCH = 20.0, 0.25, 35, 20
LR_DIVISOR = 4.0


def words(text: str) -> list[str]:
    return WORD_PATTERN.findall(text)


def build_vocabulary(train_documents: list[str]) -> list[str]:
    counts = Counter(word for text in train_documents for word in words(text))
    frequent = sorted((word for word, n in counts.items() if n >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return [UNK, EOS] + frequent[:MAX_WORDS]


class SpellingModel:
    """Character unigram over the training tokens, add-one smoothed, with an end-of-word symbol."""

    def __init__(self, train_documents: list[str], test_chars: set[str] = frozenset()):
        counts = Counter()
        tokens = 0
        for text in train_documents:
            for word in words(text):
                counts.update(word)
                tokens += 1
        total = sum(counts.values()) + tokens + len(counts) + 2  # + one each for every char, end, unknown
        self.char_nats = {c: -math.log((n + 1) / total) for c, n in counts.items()}
        self.end_nats = -math.log((tokens + 1) / total)
        self.unknown_nats = -math.log(1 / total) + unseen_char_nats(set(test_chars), set(counts))

    def nats(self, word: str) -> float:
        return sum(self.char_nats.get(c, self.unknown_nats) for c in word) + self.end_nats


def encode(documents: list[str], index: dict[str, int]) -> tuple[list[int], list[str]]:
    """The stream `<eos> doc1 <eos> doc2 <eos> ...` as ids, and the words that became <unk>."""
    ids, unknown = [index[EOS]], []
    for text in documents:
        for word in words(text):
            if word in index:
                ids.append(index[word])
            else:
                ids.append(index[UNK])
                unknown.append(word)
        ids.append(index[EOS])
    return ids, unknown


class WordLSTM(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, EMBEDDING)
        self.lstm = nn.LSTM(EMBEDDING, HIDDEN, LAYERS, dropout=DROPOUT)
        self.drop = nn.Dropout(DROPOUT)
        self.output = nn.Linear(HIDDEN, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.output.weight, -0.1, 0.1)
        nn.init.zeros_(self.output.bias)

    def forward(self, ids: torch.Tensor, state=None):  # ids: (time, batch)
        hidden, state = self.lstm(self.drop(self.embedding(ids)), state)
        return self.output(self.drop(hidden)), state


def rows(ids: list[int], batch: int) -> torch.Tensor:
    """The stream cut into `batch` equal columns (time, batch), the tail that does not fit dropped."""
    length = len(ids) // batch
    return torch.tensor(ids[: length * batch], dtype=torch.long).view(batch, length).t().contiguous()


@torch.no_grad()
def stream_nats(model: WordLSTM, ids: list[int]) -> float:
    """Total nats of ids[1:], each predicted from everything before it (one row, state carried)."""
    model.eval()
    data = torch.tensor(ids, dtype=torch.long).view(-1, 1)
    total, state = 0.0, None
    for start in range(0, len(ids) - 1, BPTT):
        inputs = data[start : start + BPTT]
        targets = data[start + 1 : start + 1 + BPTT]
        logits, state = model(inputs[: len(targets)], state)
        total += F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum").item()
    return total


def train(model: WordLSTM, train_ids: list[int], valid_ids: list[int], minutes: float) -> dict:
    data = rows(train_ids, BATCH)
    if data.size(0) < 2:
        raise SystemExit("error: the training split is too short for one batch")
    lr, clock = LR, Clock(minutes)
    best_nats, best_state, checks = math.inf, None, []
    steps = tokens = 0
    state = None
    while True:
        position = 0
        while position < data.size(0) - 1 and not clock.done():
            model.train()
            inputs = data[position : position + BPTT]
            targets = data[position + 1 : position + 1 + BPTT]
            inputs = inputs[: len(targets)]
            if state is not None:
                state = tuple(s.detach() for s in state)
            logits, state = model(inputs, state)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
            model.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(parameter.grad, alpha=-lr)
            position += len(targets)
            steps += 1
            tokens += targets.numel()
            if clock.check_due() and not clock.done():
                best_nats, best_state, lr = _check(model, valid_ids, best_nats, best_state, lr, checks, clock, steps)
        state = None  # a new pass over the training stream starts from a zero state
        if clock.done():
            break
    if not checks or checks[-1]["steps"] != steps:
        best_nats, best_state, lr = _check(model, valid_ids, best_nats, best_state, lr, checks, clock, steps)
    model.load_state_dict(best_state)
    return {"steps": steps, "train_tokens": tokens, "train_seconds": clock.elapsed(), "checks": checks}


def _check(model, valid_ids, best_nats, best_state, lr, checks, clock, steps):
    nats = stream_nats(model, valid_ids) / (len(valid_ids) - 1)
    improved = nats < best_nats
    checks.append({"seconds": round(clock.elapsed(), 1), "steps": steps, "valid_nats_per_token": nats, "lr": lr})
    if improved:
        return nats, copy.deepcopy(model.state_dict()), lr
    return best_nats, best_state, lr / LR_DIVISOR


def main() -> None:
    args, train_docs, valid_docs, test_docs = start_baseline(__doc__, "tokens", torch)
    vocabulary = build_vocabulary(train_docs)
    index = {word: i for i, word in enumerate(vocabulary)}
    train_ids, _ = encode(train_docs, index)
    valid_ids, _ = encode(valid_docs, index)
    valid_ids = valid_ids[: args.valid_count + 1]
    test_ids, test_unknown = encode(test_docs, index)
    model = WordLSTM(len(vocabulary))
    training = train(model, train_ids, valid_ids, args.minutes)

    started = time.monotonic()
    lstm_nats = stream_nats(model, test_ids)
    spelling = SpellingModel(train_docs, {c for text in test_docs for c in text if not c.isspace()})
    spelling_nats = sum(spelling.nats(word) for word in test_unknown)
    chars = scored_chars(test_docs)
    write_result(
        args.out,
        {
            "system": "word-lstm",
            "data": str(args.data),
            "minutes": args.minutes,
            "test_bits_per_char": bits_per_char(lstm_nats + spelling_nats, chars),
            "test_chars": chars,
            "test_tokens": len(test_ids) - 1,
            "test_unknown_words": len(test_unknown),
            "test_lstm_nats": lstm_nats,
            "test_spelling_nats": spelling_nats,
            "test_seconds": time.monotonic() - started,
            "vocabulary": len(vocabulary),
            "parameters": sum(p.numel() for p in model.parameters()),
            **training,
        },
    )


if __name__ == "__main__":
    main()
