"""Checkpoint folders: atomic writes, loads that never execute pickled code.

A checkpoint folder holds:
    config.json          all settings and the package version (RunConfig)
    tokenizer.json       the Hugging Face tokenizer
    model.safetensors    the best weights so far (what generate and eval load; with --ema, averaged)
    trainer_state.pt     everything --resume needs, in one file so it is replaced in one rename:
                         the weights of the last step, optimizer, data position, RNG and LSTM state,
                         and the --ema average
    metrics.jsonl        one JSON record per evaluation
    README.md            the model card (runs/model_card.py): what the Hugging Face Hub shows
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from textlstm.config import RunConfig
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs.files import BEST_WEIGHTS, CONFIG, METRICS, MODEL_CARD, TOKENIZER, TRAINER_STATE, load_config  # noqa: F401 (the folder's names, for checkpoint's callers)


def save_weights(model: LSTMLanguageModel, path: Path, step: int) -> None:
    atomic_write(path, lambda tmp: save_model(model, str(tmp), metadata={"step": str(step)}))


def save_trainer_state(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_trainer_state(path: Path) -> dict:
    """Load trainer state with weights_only=True: tensors and plain containers only, no code."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error below says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TextlstmError(f"no trainer state in {path.parent}: cannot resume from it") from None
    except pickle.UnpicklingError:
        raise TextlstmError(
            f"refusing to load {path}: it holds objects other than tensors and plain data, which could run code"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TextlstmError(f"cannot read {path}: it is corrupt or incomplete ({detail})") from None


def load_tokenizer(folder: Path) -> TextTokenizer:
    path = Path(folder) / TOKENIZER
    if not path.is_file():
        raise TextlstmError(f"checkpoint {folder} has no {TOKENIZER}")
    return TextTokenizer.load(path)


def weights_step(path: Path) -> int:
    """The training step recorded in a weights file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {}).get("step", -1))
    except (SafetensorError, OSError, ValueError) as error:
        raise TextlstmError(f"cannot read weights {path}: {error}") from None


def load_weights(model: LSTMLanguageModel, path: Path) -> None:
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, OSError) as error:
        raise TextlstmError(f"cannot read weights {path}: {error}") from None
    except RuntimeError as error:  # shapes that do not match the config
        detail = str(error).strip().splitlines()[-1].strip()
        raise TextlstmError(f"weights {path} do not match config.json: {detail}") from None
    if missing or unexpected:
        raise TextlstmError(
            f"weights {path} do not match config.json: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )


def load_checkpoint(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[LSTMLanguageModel, TextTokenizer, RunConfig]:
    """The model (in eval mode) with the best weights, the tokenizer and the config of a checkpoint."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TextlstmError(f"no such checkpoint folder: {folder}")
    config = load_config(folder)
    tokenizer = load_tokenizer(folder)
    if tokenizer.vocab_size != config.model.vocab_size:
        raise TextlstmError(
            f"checkpoint {folder}: tokenizer has {tokenizer.vocab_size} tokens "
            f"but the model expects {config.model.vocab_size}"
        )
    path = folder / BEST_WEIGHTS
    if not path.is_file():
        raise TextlstmError(f"checkpoint {folder} has no weights ({BEST_WEIGHTS})")
    model = LSTMLanguageModel(config.model)
    load_weights(model, path)
    return model.to(device).eval(), tokenizer, config


def find_latest_checkpoint(root: str | Path = "checkpoints") -> Path:
    """The most recently written checkpoint folder under `root`."""
    root = Path(root)
    candidates = [p.parent for p in root.glob(f"*/{CONFIG}")] if root.is_dir() else []
    candidates = [c for c in candidates if (c / BEST_WEIGHTS).is_file()]
    if not candidates:
        raise TextlstmError(
            f"no checkpoint found under {root}/: train one with `textlstm train`, or pass --checkpoint DIR"
        )
    return max(candidates, key=lambda folder: (folder / BEST_WEIGHTS).stat().st_mtime)
