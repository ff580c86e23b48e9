"""Does bfloat16 training learn as well? Validation loss of a small char model on tiny Shakespeare
after the same number of steps in float32 and in bfloat16, through `textlstm.training.trainer`
(benchmarks/speed/run.py reports it next to bfloat16's speed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from textlstm.training.trainer import train


def validation_loss(corpus: Path, precision: str, steps: int, hidden: int = 256) -> float:
    config = RunConfig(
        model=ModelConfig(embedding_size=64, hidden_size=hidden, layers=1, dropout=0.1, recurrent_dropout=0.1),
        data=DataConfig(dataset=str(corpus), tokenizer="char"),
        train=TrainConfig(
            batch_size=32,
            seq_len=64,
            max_steps=steps,
            eval_every=steps,
            eval_tokens=100_000,
            warmup_steps=min(50, steps // 4),
            patience=0,
            save_every_minutes=0,
            seed=1,
            device="cpu",
            precision=precision,
        ),
    )
    with tempfile.TemporaryDirectory() as folder:
        return train(config, output=Path(folder) / "run").best_valid_loss


def compare(corpus: Path, steps: int, hidden: int = 256) -> dict:
    float32 = validation_loss(corpus, "float32", steps, hidden)
    bfloat16 = validation_loss(corpus, "bfloat16", steps, hidden)
    return {
        "steps": steps,
        "hidden_size": hidden,
        "float32_valid_loss": float32,
        "bfloat16_valid_loss": bfloat16,
        "relative_difference": abs(bfloat16 - float32) / float32,
    }
