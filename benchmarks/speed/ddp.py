"""Data-parallel training on the CPU: tokens/s, time in the gradient all-reduce, bytes all-reduced.

Run it alone for one process, or under torchrun for several; --batch-size is the global batch, as
in `textlstm train`:

    OMP_NUM_THREADS=2 python -m benchmarks.speed.ddp --shape char
    OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m benchmarks.speed.ddp --shape char

--quick times a tiny model for 2 steps of each kind, to check that it runs.

Each step is the step the trainer runs (training/step.py's TrainingStep, through
DistributedDataParallel when there are several processes), with the settings SCALING.md was
measured with: weight decay 0.01, no AR/TAR. Steps with gradient synchronization alternate with
steps under DDP's no_sync() (same work, no all-reduce), so their difference is the all-reduce time
the backward pass does not hide. A communication hook also records each bucket's all-reduce from
launch to completion, and its size. Process 0 prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from benchmarks.speed.training_step import TrainerSteps
from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.training import distributed

SHAPES = {  # the shapes of benchmarks/RESULTS.md: vocab, embedding, hidden, layers, global batch, seq_len
    "char": (323, 128, 512, 2, 64, 128),
    "word": (10_000, 650, 650, 2, 20, 35),
    "tiny": (40, 8, 16, 2, 4, 8),  # --quick's
}


class AllReduceLog:
    """A DDP communication hook: the default all-reduce, timed and measured per bucket."""

    def __init__(self):
        self.seconds, self.bytes = 0.0, 0

    def hook(self, state, bucket):
        started = time.perf_counter()
        buffer = bucket.buffer()
        self.bytes += buffer.numel() * buffer.element_size()

        def done(future):
            self.seconds += time.perf_counter() - started
            return future.value()

        return allreduce_hook(state, bucket).then(done)


def trainer_steps_for(shape: str, steps: int) -> TrainerSteps:
    vocab, embedding, hidden, layers, batch, seq_len = SHAPES[shape]
    model = ModelConfig(
        vocab_size=vocab,
        embedding_size=embedding,
        hidden_size=hidden,
        layers=layers,
        dropout=0.2,
        recurrent_dropout=0.25,
    )
    train = TrainConfig(
        batch_size=batch,
        seq_len=seq_len,
        lr=4e-3,
        max_steps=10**9,
        warmup_steps=0,
        weight_decay=0.01,
        ar=0.0,
        tar=0.0,
        device="cpu",
    )
    ids = np.random.default_rng(0).integers(3, vocab, size=batch * seq_len * (2 * steps + 8) + 1)
    return TrainerSteps.on_ids(RunConfig(model=model, data=DataConfig(), train=train), ids)


def main(argv: list[str] | None = None) -> dict | None:
    """Process 0's figures (None in the other processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="char")
    parser.add_argument("--steps", type=int, default=12, help="steps of each kind (synchronized, unsynchronized)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the tiny shape, 2 steps of each kind after 1 warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.shape, args.steps, args.warmup = "tiny", 2, 1
    with distributed.session():
        step = trainer_steps_for(args.shape, args.steps + args.warmup)
        ddp = step.train_step.loss_of  # the DistributedDataParallel module when there are several processes
        log = AllReduceLog()
        several = distributed.world_size() > 1
        if several:
            ddp.register_comm_hook(None, log.hook)
        synced, unsynced, reduce_seconds, reduce_bytes = [], [], [], []
        for i in range(2 * (args.steps + args.warmup)):
            sync = i % 2 == 0
            log.seconds, log.bytes = 0.0, 0
            if several:
                dist.barrier()
            started = time.perf_counter()
            with nullcontext() if sync or not several else ddp.no_sync():
                tokens = step().tokens  # of all processes
            seconds = time.perf_counter() - started
            if i >= 2 * args.warmup:
                (synced if sync else unsynced).append(seconds)
                if sync:
                    reduce_seconds.append(log.seconds)
                    reduce_bytes.append(log.bytes)
        step_seconds = statistics.median(synced)
        params = sum(p.numel() for p in step.model.parameters())
        flat = torch.zeros(params)
        bandwidth = None
        if several:  # the same bytes in one all-reduce, nothing else running
            times = []
            for _ in range(5):
                dist.barrier()
                started = time.perf_counter()
                dist.all_reduce(flat)
                times.append(time.perf_counter() - started)
            bandwidth = statistics.median(times)
        if not distributed.is_main():
            return None
        figures = {
            "shape": args.shape,
            "processes": distributed.world_size(),
            "threads_per_process": torch.get_num_threads(),
            "global_tokens_per_step": tokens,
            "tokens_per_sec": tokens / step_seconds,
            "step_sec_median": step_seconds,
            "step_sec_no_sync_median": statistics.median(unsynced),
            "exposed_allreduce_sec": step_seconds - statistics.median(unsynced) if several else 0.0,
            "allreduce_sec_per_step_hook": statistics.median(reduce_seconds) if several else 0.0,
            "allreduce_bytes_per_step": reduce_bytes[-1] if several else 0,
            "parameters": params,
            "lone_allreduce_sec": bandwidth,
            "load_average": os.getloadavg(),
        }
        print(json.dumps(figures))
        return figures


if __name__ == "__main__":
    main()
