"""Stream batching on a corpus of many short documents: carry the LSTM state across end-of-text
tokens (what textlstm does), or reset it to zero where each document starts.

    python -m benchmarks.experiments.e2026_11_25_document_reset.bench_document_reset --steps 400 --seeds 1337 7

The corpus: tiny Shakespeare cut into its speeches (blank-line separated), one jsonl row each,
written to a temporary folder. Both variants train the same model from the same seed on the same
StreamBatcher batches for the same number of steps, with textlstm's trainer (its model, AdamW
groups, schedule, and training/step.py's TrainingStep, the step the trainer runs, with its clipping).
They differ only in the state at an end-of-text input:

    carry: the state runs on through the end-of-text token (one fused LSTM call per batch)
    reset: rows whose input is end-of-text start that token from a zero state; the batch is cut at
           every column where some row has one, and the LSTM runs segment by segment (the step's
           loss function is this segmented loss; the rest of the step is the same)

and, for comparison, textlstm's other batching on the same corpus:

    documents: --batching documents (each document in windows of at most seq_len tokens, each
               window from a zero state, padded and masked), through the same TrainingStep

Dropout is off in both, so the only difference is the reset (each segment call would otherwise draw
its own recurrent-dropout mask), and so are AR/TAR; weight decay 0.01 and float32 are pinned too: the
settings the recorded results were measured with. Each model is then scored on the validation
speeches two ways:

    stream:       evaluate_split, the state carried through the whole split (what textlstm reports)
    per document: each speech alone from a zero state (what a reset at document starts means)

Validation losses at equal steps do not depend on the machine's load; tokens/s does (the load
average is recorded with it). Results: document_reset.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.speed.training_step import TrainerSteps  # noqa: E402
from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from textlstm.evaluation.scoring import evaluate_split  # noqa: E402
from textlstm.tokens import EOT_ID  # noqa: E402
from textlstm.training.trainer import Trainer  # noqa: E402

SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"
RESULT = HERE / "document_reset.json"


def write_speeches(folder: Path) -> Path:
    speeches = [s for s in SHAKESPEARE.read_text(encoding="utf-8").split("\n\n") if s.strip()]
    path = folder / "speeches.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in speeches), encoding="utf-8")
    return path


def segmented_loss(model, inputs, targets, state, lengths=None):
    """The loss of one batch with the state zeroed, row by row, where the input is end-of-text; called
    as the TrainingStep calls its loss function, and answering as it expects (no AR/TAR penalty)."""
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
    return total, count, state, None


@torch.no_grad()
def per_document_loss(model, ids: np.ndarray, batch_size: int = 64) -> float:
    """Mean nats per token, each document (`EOT text EOT`) scored alone from a zero state."""
    model.eval()
    ends = np.flatnonzero(np.asarray(ids) == EOT_ID)
    documents = sorted(
        (torch.from_numpy(ids[a : b + 1].astype(np.int64)) for a, b in zip(ends[:-1], ends[1:])), key=len
    )
    total, count = 0.0, 0
    for first in range(0, len(documents), batch_size):
        chunk = documents[first : first + batch_size]
        lengths = torch.tensor([len(d) - 1 for d in chunk])
        block = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)  # padding id 0
        loss_sum, n, _ = model.loss(block[:, :-1], block[:, 1:], lengths=lengths)
        total, count = total + float(loss_sum), count + int(n)
    return total / count


def run_one(corpus: Path, variant: str, seed: int, args) -> dict:
    config = RunConfig(
        model=ModelConfig(embedding_size=64, hidden_size=256, layers=2, dropout=0.0, recurrent_dropout=0.0),
        data=DataConfig(
            dataset=str(corpus), tokenizer="char", batching="documents" if variant == "documents" else "stream"
        ),
        train=TrainConfig(
            batch_size=16,
            seq_len=64,
            lr=4e-3,
            weight_decay=0.01,
            warmup_steps=50,
            ar=0.0,
            tar=0.0,
            max_steps=args.steps,
            seed=seed,
            device="cpu",
            precision="float32",
        ),
    )
    trainer = Trainer(config, Path("unused"))  # reads and prepares the corpus; run() is never called
    step = TrainerSteps(trainer.train_step, trainer.batcher, trainer.config, trainer.total_steps)
    if variant == "reset":
        step.train_step.loss_of = lambda *batch: segmented_loss(trainer.model, *batch)
    rates = []
    for _ in range(args.steps):
        started = time.perf_counter()
        tokens = step().tokens
        rates.append(tokens / (time.perf_counter() - started))
    train, valid = trainer.data.splits["train"], trainer.data.splits["valid"]
    stream = evaluate_split(trainer.model, valid.ids, valid.info, batch_size=32, seq_len=256)
    return {
        "valid_loss_stream": stream.loss,
        "valid_loss_per_document": per_document_loss(trainer.model, valid.ids),
        "tokens_per_sec_median": statistics.median(rates),  # scored (not padding) tokens
        "train_documents": train.info.documents,
        "mean_document_tokens": train.info.tokens / train.info.documents,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument(
        "--variants", nargs="+", default=["carry", "reset", "documents"], choices=["carry", "reset", "documents"]
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = json.loads(RESULT.read_text()) if RESULT.is_file() else []
    with tempfile.TemporaryDirectory() as folder:
        corpus = write_speeches(Path(folder))
        for seed in args.seeds:
            for variant in args.variants:
                load = os.getloadavg()[0]
                figures = run_one(corpus, variant, seed, args)
                row = {
                    "variant": variant,
                    "seed": seed,
                    "steps": args.steps,
                    "load_before": load,
                    "load_after": os.getloadavg()[0],
                    **figures,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
                RESULT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
