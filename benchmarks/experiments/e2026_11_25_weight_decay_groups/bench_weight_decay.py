"""Weight decay on the weight matrices only, or on every parameter: validation loss at equal steps.

    python -m benchmarks.experiments.e2026_11_25_weight_decay_groups.bench_weight_decay --steps 400 --seeds 1337 7

For each corpus (tiny Shakespeare, the built-in corpus), seed and variant, trains the same model
from the same seed for the same number of steps through `textlstm.training.trainer.train` and records the
validation loss of the last step (nats per token; char tokenizer, so nats per character). The
variants differ only in `textlstm.training.optimizer.parameter_groups`:

    matrices: decay on weight matrices; biases, the embedding and other 1-D parameters undecayed
    all:      one group, decay on every parameter (what textlstm did before)

Loss at equal steps does not depend on how busy the machine is; the seconds recorded do.
Results: weight_decay.json beside this script.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

import textlstm.training.optimizer as optimizer  # noqa: E402
from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from textlstm.training.trainer import train  # noqa: E402

CORPORA = {
    "tinyshakespeare": str(REPO.parent / "shared" / "corpora" / "tinyshakespeare" / "input.txt"),
    "builtin": None,
}
RESULT = HERE / "weight_decay.json"
MATRICES_ONLY = optimizer.parameter_groups


def decay_everything(model, weight_decay):
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


VARIANTS = {"matrices": MATRICES_ONLY, "all": decay_everything}


def run_one(corpus: str | None, variant: str, seed: int, args) -> dict:
    optimizer.parameter_groups = VARIANTS[variant]
    config = RunConfig(
        model=ModelConfig(embedding_size=64, hidden_size=256, layers=2, dropout=0.1, recurrent_dropout=0.1),
        data=DataConfig(dataset=corpus, tokenizer="char"),
        # ar, tar and precision as the recorded runs had them (commit d254c62's defaults, which have changed since)
        train=TrainConfig(
            batch_size=16,
            seq_len=64,
            lr=4e-3,
            weight_decay=args.weight_decay,
            warmup_steps=50,
            ar=0.0,
            tar=0.0,
            precision="float32",
            max_steps=args.steps,
            eval_every=args.steps,
            patience=0,
            seed=seed,
            device="cpu",
        ),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        result = train(config, output=Path(folder) / "run")
    record = result.records[-1]
    return {
        "valid_loss": record["valid_loss"],
        "train_loss": record["train_loss"],
        "steps": result.steps,
        "valid_tokens": record["valid_tokens"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--weight-decay", type=float, default=0.01)  # the default of the recorded runs' day
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    args = parser.parse_args()
    results = json.loads(RESULT.read_text()) if RESULT.is_file() else []
    for name in args.corpora:
        for seed in args.seeds:
            for variant in VARIANTS:
                figures = run_one(CORPORA[name], variant, seed, args)
                row = {
                    "corpus": name,
                    "variant": variant,
                    "seed": seed,
                    "weight_decay": args.weight_decay,
                    "load_before": os.getloadavg()[0],
                    **figures,
                }
                print(json.dumps(row), flush=True)
                results.append(row)
                RESULT.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
