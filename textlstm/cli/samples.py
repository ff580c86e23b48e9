"""The texts a run writes with the generation API: samples while it trains (--sample-every) and the
model card's sample. Training may not import generation, so the command hands these functions to it."""

from __future__ import annotations

from pathlib import Path

from textlstm.runs.model_card import SAMPLE_TOKENS

SAMPLE_CHARS = 200  # the length of a --sample-every sample


def training_sample(model, tokenizer, seed: int) -> str:
    """About SAMPLE_CHARS characters that `model` writes from the start of a document (--sample-every),
    by the sampler of textlstm generate at its default settings, seeded by `seed`."""
    from textlstm.generation.generator import TextGenerator

    text = ""
    # A token is a character or more (byte tokens aside), so SAMPLE_CHARS tokens are enough.
    for piece in TextGenerator(model, tokenizer).stream(max_tokens=SAMPLE_CHARS, seed=seed):
        text += piece
        if len(text) >= SAMPLE_CHARS:
            break
    return text[:SAMPLE_CHARS]


def card_sample(folder: Path) -> str:
    """What the saved weights in `folder` write greedily from an empty prompt, as
    `textlstm generate --checkpoint FOLDER --prompt "" --temperature 0 --max-tokens SAMPLE_TOKENS` does."""
    from textlstm.generation.generator import load

    return load(folder, threads=None).generate("", temperature=0, max_tokens=SAMPLE_TOKENS)
