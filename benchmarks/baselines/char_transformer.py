"""Baseline for the held-out table: a small character transformer with nanoGPT's shakespeare_char
CPU setting, one thread.

    python -m benchmarks.baselines.char_transformer --data ~/.cache/textlstm/heldout/german --minutes 10 --out r.json

Written from the description of that setting: 4 pre-LayerNorm blocks of causal self-attention
(4 heads) and a 4x MLP (GELU), 128-dim embeddings, learned positions, blocks of 64 characters,
12 random blocks per step, no dropout, no biases, output layer tied to the token embedding.
AdamW (betas 0.9/0.99, weight decay 0.1 on matrices only), lr 1e-3 warmed up over 100 steps then
cosine-decayed to 1e-4 as the wall clock runs out, gradient norm clipped to 1.0.

Vocabulary: the characters of the training split, one end-of-document symbol (after each document,
scored and counted as one character, as textlstm counts it) and one unknown symbol. A test character
training never saw costs -log p(unknown) plus log(number of distinct such characters in the test).

Training runs until --minutes of wall clock are spent (the clock is read every step), with a check
on the first --valid-chars characters of the validation split every tenth of the budget and once at
the end; the weights of the best check are scored on the whole test split. Scoring (validation and
test) reads the split as one stream `<eod> doc1 <eod> doc2 <eod> ...` in windows of 64 characters
sliding by 32: every character after the first is scored exactly once, and every one has at least
32 characters of context except the first 64 of the stream. Result: bits per character on test
(total nats / test characters / ln 2) and the training figures, as JSON in --out.
"""

from __future__ import annotations

import copy
import math
import time

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

LAYERS, HEADS, WIDTH, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, WEIGHT_DECAY, BETAS, CLIP = 1e-3, 1e-4, 100, 0.1, (0.9, 0.99), 1.0
STRIDE = BLOCK // 2
EOD, UNKNOWN = 0, 1  # ids of the end-of-document and unknown symbols; characters follow
SCORE_BATCH = 32


class CharVocabulary:
    def __init__(self, train_documents: list[str]):
        chars = sorted({c for text in train_documents for c in text})
        self.index = {c: i + 2 for i, c in enumerate(chars)}
        self.size = len(chars) + 2

    def encode(self, documents: list[str]) -> torch.Tensor:
        ids = [EOD]
        for text in documents:
            ids += [self.index.get(c, UNKNOWN) for c in text]
            ids.append(EOD)
        return torch.tensor(ids, dtype=torch.long)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH, bias=False)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH, bias=False)
        self.projection = nn.Linear(WIDTH, WIDTH, bias=False)
        self.norm2 = nn.LayerNorm(WIDTH, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(WIDTH, 4 * WIDTH, bias=False), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(WIDTH, dim=2)
        q, k, v = (t.view(batch, length, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, WIDTH))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, WIDTH)
        self.positions = nn.Embedding(BLOCK, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(WIDTH, bias=False)
        self.apply(self._init)
        for name, parameter in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("projection.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * LAYERS))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.positions(torch.arange(ids.size(1)))
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.tokens.weight.t()  # output tied to the token embedding


@torch.no_grad()
def stream_nats(model: CharTransformer, ids: torch.Tensor, unknown_extra: float = 0.0) -> float:
    """Total nats of ids[1:]: the first BLOCK targets from one window, then STRIDE targets per window,
    each window holding the BLOCK ids before its last target. Unknown targets add `unknown_extra`."""
    model.eval()
    total = 0.0
    first_end = min(BLOCK, len(ids) - 1)  # targets 1..first_end
    logits = model(ids[:first_end].unsqueeze(0))[0]
    total += F.cross_entropy(logits, ids[1 : first_end + 1], reduction="sum").item()
    ends = list(range(first_end + STRIDE, len(ids) - 1, STRIDE)) + [len(ids) - 1]
    ends = [end for end in ends if end > first_end]
    previous = first_end
    windows = []  # (window start, first target, last target), every window BLOCK ids long
    for end in ends:
        windows.append((end - BLOCK, previous + 1, end))
        previous = end
    for start in range(0, len(windows), SCORE_BATCH):
        group = windows[start : start + SCORE_BATCH]
        inputs = torch.stack([ids[begin : begin + BLOCK] for begin, _, _ in group])
        logits = model(inputs)
        for row, (begin, first, last) in enumerate(group):
            # the logits at window position p predict ids[begin + p + 1]
            scored = logits[row, first - begin - 1 : last - begin]
            total += F.cross_entropy(scored, ids[first : last + 1], reduction="sum").item()
    total += unknown_extra * int((ids[1:] == UNKNOWN).sum())
    return total


def learning_rate(step: int, fraction: float) -> float:
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * fraction)) * (LR - MIN_LR)


def make_optimizer(model: CharTransformer) -> torch.optim.AdamW:
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": WEIGHT_DECAY}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


def train(model: CharTransformer, train_ids: torch.Tensor, valid_ids: torch.Tensor, minutes: float, seed: int) -> dict:
    if len(train_ids) <= BLOCK + 1:
        raise SystemExit(f"error: the training split is shorter than one block of {BLOCK} characters")
    optimizer = make_optimizer(model)
    generator = torch.Generator().manual_seed(seed)
    clock = Clock(minutes)
    best_nats, best_state, checks, steps = math.inf, None, [], 0
    offsets = torch.arange(BLOCK)

    def check() -> None:
        nonlocal best_nats, best_state
        nats = stream_nats(model, valid_ids) / (len(valid_ids) - 1)
        checks.append({"seconds": round(clock.elapsed(), 1), "steps": steps, "valid_nats_per_char": nats})
        if nats < best_nats:
            best_nats, best_state = nats, copy.deepcopy(model.state_dict())

    while not clock.done():
        model.train()
        lr = learning_rate(steps, clock.fraction())
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train_ids) - BLOCK - 1, (BATCH,), generator=generator)
        positions = starts[:, None] + offsets
        logits = model(train_ids[positions])
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), train_ids[positions + 1].view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        steps += 1
        if clock.check_due() and not clock.done():
            check()
    if not checks or checks[-1]["steps"] != steps:
        check()
    model.load_state_dict(best_state)
    return {"steps": steps, "train_chars": steps * BATCH * BLOCK, "train_seconds": clock.elapsed(), "checks": checks}


def main() -> None:
    args, train_docs, valid_docs, test_docs = start_baseline(__doc__, "chars", torch)
    vocabulary = CharVocabulary(train_docs)
    model = CharTransformer(vocabulary.size)
    valid_ids = vocabulary.encode(valid_docs)[: args.valid_count + 1]
    training = train(model, vocabulary.encode(train_docs), valid_ids, args.minutes, args.seed)

    started = time.monotonic()
    test_ids = vocabulary.encode(test_docs)
    unknown_extra = unseen_char_nats({c for text in test_docs for c in text}, set(vocabulary.index))
    nats = stream_nats(model, test_ids, unknown_extra)
    chars = scored_chars(test_docs)
    assert chars == len(test_ids) - 1
    write_result(
        args.out,
        {
            "system": "char-transformer",
            "data": str(args.data),
            "minutes": args.minutes,
            "test_bits_per_char": bits_per_char(nats, chars),
            "test_chars": chars,
            "test_unknown_chars": int((test_ids[1:] == UNKNOWN).sum()),
            "test_nats": nats,
            "test_seconds": time.monotonic() - started,
            "vocabulary": vocabulary.size,
            "parameters": sum(p.numel() for p in model.parameters()),
            **training,
        },
    )


if __name__ == "__main__":
    main()
