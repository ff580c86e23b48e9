"""Stream batching on a corpus of many short documents: carry the LSTM state across end-of-text
tokens (what textlstm does), or reset it to zero where each document starts.

    python benchmarks/bench_document_reset.py --steps 400 --seeds 1337 7

The corpus: tiny Shakespeare cut into its speeches (blank-line separated), one jsonl row each,
written to a temporary folder. Both variants train the same model from the same seed on the same
StreamBatcher batches for the same number of steps, with textlstm's Trainer (its model, AdamW
groups, schedule and clipping). They differ only in the state at an end-of-text input:

    carry: the state runs on through the end-of-text token (one fused LSTM call per batch)
    reset: rows whose input is end-of-text start that token from a zero state; the batch is cut at
           every column where some row has one, and the LSTM runs segment by segment

and, for comparison, textlstm's other batching on the same corpus:

    documents: --batching documents (each document in windows of at most seq_len tokens, each
               window from a zero state, padded and masked), through Trainer._train_step

Dropout is off in both, so the only difference is the reset (each segment call would otherwise draw
its own recurrent-dropout mask). Each model is then scored on the validation speeches two ways:

    stream:       evaluate_split, the state carried through the whole split (what textlstm reports)
    per document: each speech alone from a zero state (what a reset at document starts means)

Validation losses at equal steps do not depend on the machine's load; tokens/s does (the load
average is recorded with it). Results: benchmarks/results/document_reset.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from textlstm.evaluation.scoring import evaluate_split  # noqa: E402
from textlstm.model.network import detach_state  # noqa: E402
from textlstm.tokens import EOT_ID  # noqa: E402
from textlstm.training.schedule import learning_rate  # noqa: E402
from textlstm.training.trainer import Trainer  # noqa: E402

SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
RESULT = REPO / "benchmarks" / "results" / "document_reset.json"


def write_speeches(folder: Path) -> Path:
    speeches = [s for s in SHAKESPEARE.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    path = folder / "speeches.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in speeches), encoding="utf-8")
    return path


def segmented_loss(model, inputs, targets, state):
    """The loss of one batch with the state zeroed, row by row, where the input is end-of-text."""
    starts = (inputs == EOT_ID).any(dim=0).nonzero().flatten().tolist()
    cuts = sorted({0, *starts, inputs.shape[1]})
    if state is None:
        state = model.initial_state(inputs.shape[0])
    total, count = 0.0, 0
    for begin, end in zip(cuts, cuts[1:]):
        keep = (inputs[:, begin] != EOT_ID).to(state[0].dtype)[None, :, None]
        state = (state[0] * keep, state[1] * keep)
        loss_sum, n, state = model.loss(inputs[:, begin:end], targets[:, begin:end], state)
        total, count = total + loss_sum, count + n
    return total, count, state


def train_step(trainer: Trainer, reset: bool) -> int:
    """Trainer._train_step for stream batching, with the reset as an option."""
    epoch, index = divmod(trainer.step, len(trainer.batcher))
    for group in trainer.optimizer.param_groups:
        group["lr"] = learning_rate(trainer.step, trainer.total_steps, trainer.config.train)
    trainer.model.train()
    inputs, targets = trainer.batcher.batch(index)
    state = None if index == 0 else trainer.lstm_state
    if reset:
        loss_sum, count, new_state = segmented_loss(trainer.model, inputs, targets, state)
    else:
        loss_sum, count, new_state = trainer.model.loss(inputs, targets, state)
    trainer.optimizer.zero_grad(set_to_none=True)
    (loss_sum / count.clamp(min=1)).backward()
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.config.train.clip)
    trainer.optimizer.step()
    trainer.lstm_state = detach_state(new_state)
    trainer.step += 1
    return int(count)


@torch.no_grad()
def per_document_loss(model, ids: np.ndarray, batch_size: int = 64) -> float:
    """Mean nats per token, each document (`EOT text EOT`) scored alone from a zero state."""
    model.eval()
    ends = np.flatnonzero(np.asarray(ids) == EOT_ID)
    documents = sorted((torch.from_numpy(ids[a : b + 1].astype(np.int64)) for a, b in zip(ends[:-1], ends[1:])), key=len)
    total, count = 0.0, 0
    for first in range(0, len(documents), batch_size):
        chunk = documents[first : first + batch_size]
        lengths = torch.tensor([len(d) - 1 for d in chunk])
        block = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)  # padding id 0
        loss_sum, n, _ = model.loss(block[:, :-1], block[:, 1:], lengths=lengths)
        total, count = total + float(loss_sum), count + int(n)
    return total / count


def documents_step(trainer: Trainer) -> int:
    _, count = trainer._train_step()
    trainer.step += 1
    return count


def run_one(corpus: Path, variant: str, seed: int, args) -> dict:
    config = RunConfig(
        model=ModelConfig(embedding_size=64, hidden_size=256, layers=2, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(dataset=str(corpus), tokenizer="char", batching="documents" if variant == "documents" else "stream"),
        train=TrainConfig(batch_size=16, seq_len=64, lr=4e-3, warmup_steps=50, max_steps=args.steps, seed=seed, device="cpu"),
    )
    trainer = Trainer(config, Path("unused"))
    trainer._load_data()
    trainer._build()
    trainer.clock = 0.0
    rates = []
    for _ in range(args.steps):
        started = time.perf_counter()
        tokens = documents_step(trainer) if variant == "documents" else train_step(trainer, variant == "reset")
        rates.append(tokens / (time.perf_counter() - started))
    valid = trainer.splits["valid"]
    stream = evaluate_split(trainer.model, valid.ids, valid.info, batch_size=32, seq_len=256)
    return {
        "valid_loss_stream": stream.loss,
        "valid_loss_per_document": per_document_loss(trainer.model, valid.ids),
        "tokens_per_sec_median": statistics.median(rates),  # scored (not padding) tokens
        "train_documents": trainer.splits["train"].info.documents,
        "mean_document_tokens": trainer.splits["train"].info.tokens / trainer.splits["train"].info.documents,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--variants", nargs="+", default=["carry", "reset", "documents"], choices=["carry", "reset", "documents"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(RESULT.read_text()) if RESULT.is_file() else []
    with tempfile.TemporaryDirectory() as folder:
        corpus = write_speeches(Path(folder))
        for seed in args.seeds:
            for variant in args.variants:
                load = os.getloadavg()[0]
                figures = run_one(corpus, variant, seed, args)
                row = {"variant": variant, "seed": seed, "steps": args.steps, "load_before": load,
                       "load_after": os.getloadavg()[0], **figures}
                print(json.dumps(row), flush=True)
                results.append(row)
                RESULT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
