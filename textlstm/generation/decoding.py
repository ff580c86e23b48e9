"""From token ids to the text a user sees: streamed as it is produced, whole UTF-8 characters
only, cut before the first stop string.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterable, Iterator

from tokenizers.decoders import DecodeStream

from textlstm.data.tokenizer import TextTokenizer
from textlstm.tokens import is_byte_token

DECODE_CONTEXT = 4  # ids before the first new one handed to the decoder, for decoders that look back
# Decoders that give a token its own name as text whatever its neighbours: char (byte tokens aside) and word.
CONTEXT_FREE_DECODERS = (
    {"type": "Fuse"},
    {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}]},
)

_own_texts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def own_texts(tokenizer: TextTokenizer) -> list[str | None] | None:
    """The text of each token id decoded on its own, for a tokenizer whose decoder never looks at a
    token's neighbours (None for byte tokens, which combine); None for any other tokenizer."""
    if tokenizer not in _own_texts:
        decoder = json.loads(tokenizer.hf.to_str()).get("decoder")
        texts = None
        if decoder in CONTEXT_FREE_DECODERS:
            combines = "ByteFallback" in json.dumps(decoder)
            names = [tokenizer.hf.id_to_token(i) for i in range(tokenizer.vocab_size)]
            texts = [None if name is None or (combines and is_byte_token(name)) else name for name in names]
        _own_texts[tokenizer] = texts
    return _own_texts[tokenizer]


class TextDecoder:
    """Token ids to text pieces; bytes of a character split over several tokens wait until it is whole."""

    def __init__(self, tokenizer: TextTokenizer, context: list[int] | None = None):
        self.tokenizer = tokenizer
        # Earlier ids let decoders that depend on neighbours (spaces, word boundaries) decode correctly.
        self._stream = DecodeStream(ids=context or None, skip_special_tokens=False)
        self._held: list[int] = []
        # The server decodes every token of every sequence: where a token's text does not depend on
        # its neighbours it is looked up, and the stream only assembles byte tokens, from a fresh
        # start (such a decoder needs no context).
        self._own_texts = own_texts(tokenizer)

    def push(self, token: int) -> str:
        if self._own_texts is not None and not self._held:
            text = self._own_texts[token]
            if text is not None:
                self._stream = None
                return text
        if self._stream is None:
            self._stream = DecodeStream(skip_special_tokens=False)
        try:
            piece = self._stream.step(self.tokenizer.hf, token)
        except Exception:  # DecodeStream gives up on some runs of invalid UTF-8: decode them plainly
            self._stream = DecodeStream(skip_special_tokens=False)
            piece = self.tokenizer.decode([*self._held, token])
        if piece is None:
            self._held.append(token)
            return ""
        self._held.clear()
        return piece

    def flush(self) -> str:
        """Whatever is still held at the end (an incomplete character decodes as U+FFFD)."""
        text = self.tokenizer.decode(self._held) if self._held else ""
        self._held.clear()
        return text


class StopStringFilter:
    """Passes text through until the first stop string; holds back text that may start one."""

    def __init__(self, stops: Iterable[str]):
        self.stops = tuple(stops)
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            text, self.pending = self.pending[:cut], ""
            return text
        keep = self._longest_stop_prefix_suffix()
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return text

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text

    def _longest_stop_prefix_suffix(self) -> int:
        """Length of the longest end of `pending` that is the beginning of some stop string."""
        for length in range(min(len(self.pending), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
            tail = self.pending[-length:]
            if any(s.startswith(tail) for s in self.stops):
                return length
        return 0


def stream_text(tokens: Iterable[int], decoder: TextDecoder, stops: Iterable[str] = ()) -> Iterator[str]:
    """Text pieces of `tokens` as they arrive, ending before the first stop string."""
    stop_filter = StopStringFilter(stops)
    for token in tokens:
        text = stop_filter.push(decoder.push(token))
        if text:
            yield text
        if stop_filter.stopped:
            return
    text = stop_filter.push(decoder.flush())
    if not stop_filter.stopped:
        text += stop_filter.flush()
    if text:
        yield text
