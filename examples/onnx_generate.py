"""Greedy text from a `textlstm export` folder, with onnxruntime, numpy and tokenizers only (no torch).

    textlstm export checkpoints/my-run -o my-run-onnx
    python3 examples/onnx_generate.py my-run-onnx --prompt "ROMEO:" --max-tokens 200

It prints what `textlstm generate --temperature 0 --precision float32 --checkpoint checkpoints/my-run --prompt ...
--max-tokens ...` prints: the prompt, then its continuation, then a newline if the text does not end with one. The
prompt is read after the end-of-text token, as the start of a document, in one run of the graph;
then each new token is one run from the carried state h, c. Each token is the most likely one,
padding excluded; end of text ends the text and is not printed.

Needs: pip install onnxruntime numpy "tokenizers>=0.22"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

FORMAT_VERSION = 1  # of the export folder this script reads
DECODE_CONTEXT = 4  # prompt ids handed to the decoder first, for decoders that look back (as textlstm does)


class StepModel:
    """model.onnx with its carried state: `read` some ids, get the next token's log-probabilities."""

    def __init__(self, folder: Path, export: dict):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one row of a small LSTM: a second thread only waits
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.inputs, self.outputs = export["inputs"], export["outputs"]
        shape = (export["layers"], 1, export["hidden_size"])
        self.h, self.c = np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def read(self, ids: list[int]) -> np.ndarray:
        """Log-probabilities [vocab] of the token after `ids`, read in one run from the carried state."""
        feed = dict(zip(self.inputs, (np.array([ids], dtype=np.int64), self.h, self.c)))
        log_probs, self.h, self.c = self.session.run(self.outputs, feed)
        return log_probs[0, -1]


class Decoder:
    """Token ids to text pieces as textlstm's generation decodes them (textlstm/generation/decoding.py):
    a streamed decoder that holds the bytes of a character until it is whole."""

    def __init__(self, tokenizer: Tokenizer, pad_id: int, context: list[int]):
        self.tokenizer, self.pad_id = tokenizer, pad_id
        self.stream = DecodeStream(ids=context or None, skip_special_tokens=False)
        self.held: list[int] = []

    def push(self, token: int) -> str:
        try:
            piece = self.stream.step(self.tokenizer, token)
        except Exception:  # DecodeStream gives up on some runs of invalid UTF-8: decode them plainly
            self.stream = DecodeStream(skip_special_tokens=False)
            piece = self.decode([*self.held, token])
        if piece is None:
            self.held.append(token)
            return ""
        self.held.clear()
        return piece

    def flush(self) -> str:
        """What is still held at the end (an incomplete character decodes as U+FFFD)."""
        text = self.decode(self.held) if self.held else ""
        self.held.clear()
        return text

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != self.pad_id], skip_special_tokens=False)


def greedy_tokens(model: StepModel, prompt_ids: list[int], max_tokens: int, pad_id: int, eot_id: int):
    """Up to max_tokens most likely ids after the prompt; stops at end of text (not yielded)."""
    log_probs = model.read([eot_id, *prompt_ids])
    for _ in range(max_tokens):
        log_probs[pad_id] = -np.inf
        token = int(np.argmax(log_probs))
        if token == eot_id:
            return
        yield token
        log_probs = model.read([token])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Greedy text from a textlstm ONNX export folder.")
    parser.add_argument("folder", type=Path, help="the folder `textlstm export` wrote")
    parser.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    parser.add_argument("--max-tokens", type=int, default=500, help="stop after this many new tokens (default 500)")
    args = parser.parse_args(argv)

    export = json.loads((args.folder / "config.json").read_text(encoding="utf-8"))["export"]
    if export["format_version"] != FORMAT_VERSION:
        sys.exit(f"error: {args.folder} is export format {export['format_version']}; this script reads {FORMAT_VERSION}")
    tokenizer = Tokenizer.from_file(str(args.folder / "tokenizer.json"))
    tokenizer.encode_special_tokens = True  # text that spells "<|endoftext|>" is text, as in textlstm
    pad_id, eot_id = export["pad_id"], export["eot_id"]

    prompt_ids = tokenizer.encode(args.prompt, add_special_tokens=False).ids
    model = StepModel(args.folder, export)
    decoder = Decoder(tokenizer, pad_id, prompt_ids[-DECODE_CONTEXT:])
    text = args.prompt
    write(args.prompt)
    for token in greedy_tokens(model, prompt_ids, args.max_tokens, pad_id, eot_id):
        text += write(decoder.push(token))
    text += write(decoder.flush())
    if not text.endswith("\n"):
        write("\n")


def write(text: str) -> str:
    sys.stdout.write(text)
    sys.stdout.flush()
    return text


if __name__ == "__main__":
    main()
