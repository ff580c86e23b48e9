r"""Early learning: textlstm against a plain PyTorch loop over the first 200 steps (issue 10).

    python -m benchmarks.experiments.e2026_11_25_early_learning.bench_early_learning   # both, 200 steps, seed 1337
    python -m benchmarks.experiments.e2026_11_25_early_learning.bench_early_learning --seeds 1 2 3 --only textlstm \
        --set dropout=0 --set lr=2e-3

Shape: char model, embedding 64, LSTM 2 x 128, batch 32 x 64, on tiny Shakespeare with nanoGPT's
split (first 90% of the characters train, last 10% validation). Both models are scored by the same
function on the same validation text, so the figures are nats per character of the same text.

The plain loop is what anyone would write first: nn.Embedding -> nn.LSTM -> nn.Linear with PyTorch's
default initialisation, AdamW (lr 2e-3 constant, PyTorch's default betas and weight decay), gradient
norm clipped at 1, one output per character of the text. By default it draws random windows of 64
characters with a zero start state (nanoGPT's get_batch); `--plain-batching stream` gives it
textlstm's contiguous rows with the state carried instead.

textlstm runs through its own Trainer with its config defaults, except the shape above, 200 steps,
the char tokenizer (every recorded run had it; pinned, since `--tokenizer auto` may choose another)
and any `--set name=value` (a ModelConfig or TrainConfig field).

Equal-step losses do not depend on the machine's load, so this runs fine on a busy machine; the
wall time it prints does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.training.trainer import Reporter, Trainer

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"

SHAPE = dict(embedding_size=64, hidden_size=128, layers=2)
BATCH = dict(batch_size=32, seq_len=64)


def split_text(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    boundary = int(len(text) * 0.9)
    return text[:boundary], text[boundary:]


# ----------------------------------------------------------------------------- the plain loop


class PlainLSTM(nn.Module):
    def __init__(self, vocab: int, outputs: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab, SHAPE["embedding_size"])
        self.lstm = nn.LSTM(SHAPE["embedding_size"], SHAPE["hidden_size"], SHAPE["layers"], batch_first=True)
        self.decoder = nn.Linear(SHAPE["hidden_size"], outputs)

    def forward(self, ids, state=None):
        out, state = self.lstm(self.embedding(ids), state)
        return self.decoder(out), state


def plain_loop(
    train_ids: np.ndarray,
    vocab: int,
    steps: int,
    seed: int,
    outputs: int,
    batching: str,
    betas: tuple[float, float],
    weight_decay: float,
    bias_init: str = "default",
) -> PlainLSTM:
    torch.manual_seed(seed)
    model = PlainLSTM(vocab, outputs)
    with torch.no_grad():
        if bias_init == "zero":
            model.decoder.bias.zero_()
        elif bias_init == "unigram":  # log frequencies; outputs that never occur at half a count
            counts = np.bincount(train_ids, minlength=outputs).astype(np.float64)
            model.decoder.bias.copy_(torch.from_numpy(np.log(np.maximum(counts, 0.5) / counts.sum())))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=betas, weight_decay=weight_decay)
    data = torch.from_numpy(train_ids)
    batch, seq = BATCH["batch_size"], BATCH["seq_len"]
    row_len = (len(data) - 1) // batch
    state = None
    for step in range(steps):
        if batching == "random":
            starts = torch.randint(len(data) - seq - 1, (batch,))
            block = torch.stack([data[s : s + seq + 1] for s in starts])
            state = None
        else:  # contiguous rows, state carried: what textlstm's StreamBatcher does
            starts = torch.arange(batch) * row_len + step * seq
            block = torch.stack([data[s : s + seq + 1] for s in starts])
        logits, state = model(block[:, :-1], state)
        loss = F.cross_entropy(logits.reshape(-1, outputs), block[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if state is not None:
            state = tuple(s.detach() for s in state)
    return model


# ----------------------------------------------------------------------------- textlstm


class Quiet(Reporter):
    pass


def textlstm_run(steps: int, seed: int, overrides: dict) -> tuple[nn.Module, object]:
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    # The dropouts and weight decay the benchmark was recorded with (training would choose them: "auto").
    model_settings = {
        **SHAPE,
        "dropout": 0.1,
        "recurrent_dropout": 0.1,
        **{k: v for k, v in overrides.items() if k in model_fields},
    }
    train_settings = {
        **BATCH,
        "max_steps": steps,
        "eval_every": 10**9,
        "patience": 0,
        "seed": seed,
        "weight_decay": 0.01,
    }
    train_settings.update({k: v for k, v in overrides.items() if k not in model_fields})
    config = RunConfig(
        model=ModelConfig(**model_settings),
        data=DataConfig(dataset=str(CORPUS), tokenizer="char"),
        train=TrainConfig(**train_settings),
    )
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(config, Path(folder), Quiet())
        trainer.run()
    return trainer.model, trainer.data.tokenizer


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def nats_per_char(model: nn.Module, ids: np.ndarray, rows: int = 16, chunk: int = 512) -> float:
    """Mean loss over every id after the first of each of `rows` contiguous parts, state carried."""
    model.eval()
    width = (len(ids) - 1) // rows
    data = torch.from_numpy(ids[: rows * width + 1].astype(np.int64))
    inputs = data[:-1].view(rows, width)
    targets = torch.stack([data[r * width + 1 : (r + 1) * width + 1] for r in range(rows)])
    total, state = 0.0, None
    for start in range(0, width, chunk):
        logits, state = model(inputs[:, start : start + chunk], state)
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                targets[:, start : start + chunk].reshape(-1),
                reduction="sum",
            )
        )
    return total / targets.numel()


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--only", choices=["plain", "textlstm"])
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a textlstm ModelConfig/TrainConfig field, e.g. dropout=0",
    )
    parser.add_argument("--plain-outputs", type=int, help="outputs of the plain loop (default: one per character)")
    parser.add_argument("--plain-batching", choices=["random", "stream"], default="random")
    parser.add_argument("--plain-betas", type=float, nargs=2, default=[0.9, 0.999])
    parser.add_argument("--plain-weight-decay", type=float, default=0.01)
    parser.add_argument(
        "--plain-bias-init",
        choices=["default", "zero", "unigram"],
        default="default",
        help="output bias: PyTorch's uniform init, zeros, or the log unigram frequencies",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line per run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {name: parse_value(value) for name, value in (item.split("=", 1) for item in args.set)}

    train_text, valid_text = split_text(CORPUS)
    chars = sorted(set(train_text))
    index = {c: i for i, c in enumerate(chars)}
    plain_train = np.array([index[c] for c in train_text], dtype=np.int64)
    plain_valid = np.array([index[c] for c in valid_text], dtype=np.int64)

    for seed in args.seeds:
        runs = []
        if args.only != "textlstm":
            started = time.perf_counter()
            outputs = args.plain_outputs or len(chars)
            model = plain_loop(
                plain_train,
                len(chars),
                args.steps,
                seed,
                outputs,
                args.plain_batching,
                tuple(args.plain_betas),
                args.plain_weight_decay,
                args.plain_bias_init,
            )
            runs.append(
                (
                    "plain",
                    nats_per_char(model, plain_valid),
                    time.perf_counter() - started,
                    f"outputs {outputs}, {args.plain_batching} windows, betas {tuple(args.plain_betas)}, "
                    f"weight decay {args.plain_weight_decay}, output bias {args.plain_bias_init}",
                )
            )
        if args.only != "plain":
            started = time.perf_counter()
            model, tokenizer = textlstm_run(args.steps, seed, overrides)
            valid_ids = np.asarray(tokenizer.encode(valid_text), dtype=np.int64)
            runs.append(
                (
                    "textlstm",
                    nats_per_char(model, valid_ids),
                    time.perf_counter() - started,
                    " ".join(item for item in args.set) or "defaults",
                )
            )
        for name, loss, seconds, settings in runs:
            if args.json:
                print(
                    json.dumps(
                        {
                            "run": name,
                            "seed": seed,
                            "steps": args.steps,
                            "valid_nats_per_char": round(loss, 4),
                            "seconds": round(seconds, 1),
                            "settings": settings,
                        }
                    ),
                    flush=True,
                )
            else:
                print(
                    f"{name:<9} seed {seed:<5} step {args.steps}: "
                    f"valid {loss:.4f} nats/char  ({seconds:.0f} s; {settings})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
