"""Training steps to time: textlstm's own (training/step.py's TrainingStep, the step the trainer runs)
and a plain PyTorch baseline.

Both read the same token ids through the same StreamBatcher, carry the LSTM state across batches
(truncated BPTT) and do forward, backward, gradient clipping and AdamW. The baseline is the
pytorch/examples word_language_model step written out: Embedding -> nn.LSTM -> Linear ->
cross-entropy, no dropout.

Run as a script, it times them on one device, each precision of textlstm's against the float32
baseline, on random token ids (the speed of a step does not depend on the text), and writes JSON:

    python -m benchmarks.speed.training_step --device cuda --output benchmarks/results/gpu_training_step.json
    python -m benchmarks.speed.training_step --quick    # the tiny shape, a few steps: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.data.batchers import StreamBatcher
from textlstm.hardware.device import resolve_device
from textlstm.hardware.precision import training_precision
from textlstm.training import distributed
from textlstm.training.schedule import learning_rate
from textlstm.training.step import StepOutcome, TrainingStep
from textlstm.training.trainer import RunData, batch_at, build_training, step_limit


@dataclass(frozen=True)
class Shape:
    """A model and batch shape to time."""

    name: str
    vocab: int
    embedding: int
    hidden: int
    layers: int
    batch: int
    seq_len: int
    dropout: float = 0.2
    recurrent_dropout: float = 0.25

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    def flops_per_token(self) -> int:
        """Forward + backward FLOPs of the LSTM and output layer per token: 6 x their weights
        (forward 2 FLOPs per weight, backward twice the forward). The embedding is a lookup."""
        weights = 0
        for layer in range(self.layers):
            inputs = self.embedding if layer == 0 else self.hidden
            weights += 4 * self.hidden * (inputs + self.hidden)
        weights += self.hidden * self.vocab
        return 6 * weights


class TrainerSteps:
    """The trainer's own training step (a TrainingStep) on the batches of `batcher`, each call the next batch
    as the trainer's loop takes it: the schedule's learning rate, and the LSTM state carried from the
    batch before (stream batching; a new pass starts from a zero state) or none (document windows)."""

    def __init__(self, train_step: TrainingStep, batcher, config: RunConfig, total_steps: float):
        self.train_step, self.batcher, self.config, self.total_steps = train_step, batcher, config, total_steps
        self.model = train_step.model
        self.steps = 0  # taken so far, skipped ones included
        self.state = None  # the LSTM state carried into the next batch

    @classmethod
    def on_ids(cls, config: RunConfig, ids: np.ndarray) -> TrainerSteps:
        """Set up as the trainer sets up a new run (training.trainer.build_training), on token ids below
        config.model.vocab_size instead of a corpus."""
        device = distributed.local_device(resolve_device(config.train.device))
        precision = training_precision(config.train.precision, device)
        data = RunData(
            corpus=None,
            tokenizer=SimpleNamespace(vocab_size=config.model.vocab_size),
            splits={"train": SimpleNamespace(ids=ids)},
            stream=None,
        )
        train_step, batcher = build_training(config, data, device, precision)
        return cls(train_step, batcher, config, step_limit(config, len(batcher)))

    def __call__(self) -> StepOutcome:
        inputs, targets, lengths, carried = batch_at(self.batcher, self.steps, self.state)
        lr = learning_rate(self.steps, self.total_steps, self.config.train)
        outcome = self.train_step(inputs, targets, carried, lengths, lr)
        if math.isfinite(outcome.loss_sum):  # a skipped step leaves the carried state as it was
            self.state = outcome.state
        self.steps += 1
        return outcome


def textlstm_step(
    shape: Shape, ids: np.ndarray, precision: str = "float32", seed: int = 0, device: str = "cpu", **model_overrides
) -> TrainerSteps:
    """One call = one step of textlstm's trainer (its model, optimizer, batcher and TrainingStep)."""
    model = ModelConfig(
        vocab_size=shape.vocab,
        embedding_size=shape.embedding,
        hidden_size=shape.hidden,
        layers=shape.layers,
        dropout=shape.dropout,
        recurrent_dropout=shape.recurrent_dropout,
    )
    model = ModelConfig(**{**model.__dict__, **model_overrides})
    train = TrainConfig(
        batch_size=shape.batch,
        seq_len=shape.seq_len,
        lr=4e-3,
        max_steps=10**9,
        warmup_steps=0,
        weight_decay=0.01,
        seed=seed,
        device=device,
        precision=precision,
    )
    return TrainerSteps.on_ids(RunConfig(model=model, data=DataConfig(), train=train), ids)


class PlainLSTM(nn.Module):
    def __init__(self, shape: Shape):
        super().__init__()
        self.embedding = nn.Embedding(shape.vocab, shape.embedding)
        self.lstm = nn.LSTM(shape.embedding, shape.hidden, shape.layers, batch_first=True)
        self.decoder = nn.Linear(shape.hidden, shape.vocab)

    def forward(self, ids, state):
        output, state = self.lstm(self.embedding(ids), state)
        return self.decoder(output), state


def baseline_step(shape: Shape, ids: np.ndarray, seed: int = 0, device: str = "cpu") -> Callable[[], None]:
    """One call = one step of the plain hand-written baseline, float32."""
    torch.manual_seed(seed)
    model = PlainLSTM(shape).train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batcher = StreamBatcher(ids, shape.batch, shape.seq_len)
    carried = {"step": 0, "state": None}

    def step() -> None:
        inputs, targets = batcher.batch(carried["step"] % len(batcher))
        logits, state = model(inputs.to(device), carried["state"])
        loss = F.cross_entropy(logits.reshape(-1, shape.vocab), targets.to(device).reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        carried["state"] = tuple(s.detach() for s in state)
        carried["step"] += 1

    return step


def seconds(step: Callable[[], None], repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


# The shapes the script times: run.py's char and word-medium shapes, and one large enough to fill a GPU.
SHAPES = {
    "tiny": Shape("tiny", 40, 8, 16, 2, 4, 8),  # --quick's
    "char": Shape("char", 100, 128, 512, 2, 64, 128),
    "word-medium": Shape("word-medium", 10_000, 650, 650, 2, 20, 35),
    "char-large": Shape("char-large", 100, 256, 1024, 3, 128, 256),
}
PRECISIONS = ("float32", "bfloat16", "float16")


def steps_per_second(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> float:
    """Steps per second over `steps` calls after `warmup` untimed ones; a GPU is waited for at both ends."""
    for _ in range(warmup):
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return steps / (time.perf_counter() - start)


def time_shape(device: torch.device, name: str, precisions: list[str], warmup: int, steps: int) -> dict:
    """Tokens per second of the float32 baseline and of textlstm in each precision; a contender that
    fails is recorded with its error, and the others are timed still."""
    shape = SHAPES[name]
    ids = np.random.default_rng(0).integers(2, shape.vocab, shape.tokens_per_step * (warmup + steps + 1) + 1)
    contenders = {"baseline_float32": lambda: baseline_step(shape, ids, device=str(device))}
    for precision in precisions:
        contenders[f"textlstm_{precision}"] = lambda p=precision: textlstm_step(shape, ids, p, device=str(device))
    rates, errors = {}, {}
    for contender, build in contenders.items():
        try:
            rates[contender] = shape.tokens_per_step * steps_per_second(build(), device, warmup, steps)
        except Exception as error:  # a first run on new hardware: say what broke and go on
            errors[contender] = f"{type(error).__name__}: {error}"
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(
        f"  {name}: "
        + ", ".join(
            [f"{n} {v:,.0f} tok/s" for n, v in rates.items()] + [f"{n} failed: {e}" for n, e in errors.items()]
        ),
        flush=True,
    )
    return {"shape": asdict(shape), "tokens_per_second": rates, "errors": errors}


def machine(device: torch.device) -> dict:
    about = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor(),
    }
    if device.type == "cuda":
        about |= {
            "gpu": torch.cuda.get_device_name(device),
            "compute_capability": list(torch.cuda.get_device_capability(device)),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return about


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Training steps per second of textlstm and a plain PyTorch baseline on one device."
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["char", "word-medium", "char-large"])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps first (cuDNN picks its kernels, the allocator fills)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per contender")
    parser.add_argument("--output", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="the tiny shape, 1 warm-up and 2 timed steps, to check that it runs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.shapes, args.warmup, args.steps = ["tiny"], 1, 2
    device = torch.device(args.device)
    print(f"training steps on {device}:", flush=True)
    result = {"machine": machine(device), "warmup": args.warmup, "steps": args.steps, "shapes": {}}
    for name in args.shapes:
        result["shapes"][name] = time_shape(device, name, args.precisions, args.warmup, args.steps)
        if args.output is not None:  # after each shape, so that a run cut short keeps what it measured
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.output is not None:
        print(f"written to {args.output}")
    return result


if __name__ == "__main__":
    sys.exit(1 if any(shape["errors"] for shape in main()["shapes"].values()) else 0)
