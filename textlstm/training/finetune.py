"""Fine-tuning: a new run that starts from a trained checkpoint's weights and tokenizer (its parent).

The parent fixes the model's shape and the tokenizer; the new run has its own data, optimizer,
schedule and folder, and its config.json names the parent (`train.init_from`). Text the parent's
tokenizer never saw still encodes: a char tokenizer falls back to UTF-8 bytes, a word tokenizer
reads unseen words as the unknown token, byte-level BPE covers every string.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textlstm.config import AUTO, RunConfig
from textlstm.data.tokenizer import TextTokenizer
from textlstm.errors import TextlstmError
from textlstm.model.network import LSTMLanguageModel
from textlstm.runs import checkpoint as ckpt
from textlstm.runs import hub
from textlstm.tokens import UNK, byte_token

# ModelConfig fields that decide the weights' shapes: the parent's are kept. Dropouts may change.
SHAPE_FIELDS = (
    "embedding_size",
    "hidden_size",
    "layers",
    "cell",
    "mogrifier_rounds",
    "tie_weights",
    "output_layer",
    "adaptive_cutoffs",
)
CHUNK = 1 << 24  # ids counted at a time, so a corpus of many GB is counted in bounded memory


@dataclass
class Parent:
    folder: Path
    config: RunConfig

    def tokenizer(self) -> TextTokenizer:
        tokenizer = ckpt.load_tokenizer(self.folder)
        if tokenizer.vocab_size != self.config.model.vocab_size:
            raise TextlstmError(
                f"checkpoint {self.folder}: tokenizer has {tokenizer.vocab_size} tokens "
                f"but the model expects {self.config.model.vocab_size}"
            )
        return tokenizer

    def load_weights(self, model: LSTMLanguageModel) -> int:
        """Copy the parent's best weights into `model`; return the step they were saved at."""
        path = self.folder / ckpt.BEST_WEIGHTS
        ckpt.load_weights(model, path)
        return ckpt.weights_step(path)


def load_parent(folder: str | Path) -> Parent:
    folder = hub.resolve_checkpoint(folder)
    if not folder.is_dir():
        raise TextlstmError(f"--init-from: no such checkpoint folder: {folder}")
    config = ckpt.load_config(folder)
    if not (folder / ckpt.BEST_WEIGHTS).is_file():
        raise TextlstmError(f"--init-from: checkpoint {folder} has no weights ({ckpt.BEST_WEIGHTS})")
    return Parent(folder.resolve(), config)


def inherit(config: RunConfig, parent: Parent) -> RunConfig:
    """`config` with the parent's model shape and tokenizer; its dropouts, data and training settings kept."""
    model = dataclasses.replace(
        parent.config.model,
        dropout=config.model.dropout,
        recurrent_dropout=config.model.recurrent_dropout,
        embedding_dropout=config.model.embedding_dropout,
    )
    data = dataclasses.replace(
        config.data, tokenizer=parent.config.data.tokenizer, vocab_size=parent.config.data.vocab_size
    )
    train = dataclasses.replace(config.train, init_from=str(parent.folder))
    return dataclasses.replace(config, model=model, data=data, train=train)


def conflicts(given: dict, parent: Parent) -> list[str]:
    """Options in `given` (option name -> value) that would change the parent's shape or tokenizer."""
    fixed = {name: getattr(parent.config.model, name) for name in SHAPE_FIELDS}
    fixed.update(tokenizer=parent.config.data.tokenizer, vocab_size=parent.config.data.vocab_size)
    fixed.update(output_layer=parent.config.model.output_layer)
    return [
        f"--{name.replace('_', '-')} {_shown(value)} (the parent has {_shown(fixed[name])})"
        for name, value in given.items()
        if name in fixed
        and value != fixed[name]
        and not (name in ("tokenizer", "output_layer") and value == AUTO)
        and not (name in SHAPE_FIELDS and value is None)  # a size left at auto: the parent's
    ]


def unseen_note(tokenizer: TextTokenizer, kind: str, ids: np.ndarray) -> str | None:
    """How much of the new training text the parent's vocabulary lacks, in words or characters."""
    if kind == "word" and tokenizer.unk_id is not None:
        count = _count(ids, lambda chunk: chunk == tokenizer.unk_id)
        return f"{count:,} words of the new text are not in the vocabulary (read as {UNK})"
    if kind == "char":
        # Characters the vocabulary lacks are spelled as UTF-8 byte tokens; count each character
        # once, by its first byte (continuation bytes are 0x80-0xBF).
        lead = np.zeros(tokenizer.vocab_size, dtype=bool)
        for byte in [*range(0x80), *range(0xC0, 0x100)]:
            token_id = tokenizer.hf.token_to_id(byte_token(byte))
            if token_id is not None:
                lead[token_id] = True
        count = _count(ids, lambda chunk: lead[chunk])
        return f"{count:,} characters of the new text are not in the vocabulary (read as UTF-8 bytes)"
    return None


def _count(ids: np.ndarray, matches) -> int:
    return sum(
        int(np.count_nonzero(matches(np.asarray(ids[start : start + CHUNK])))) for start in range(0, len(ids), CHUNK)
    )


def _shown(value) -> str:
    if value is None:
        return "the default"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
