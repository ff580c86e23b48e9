"""Per-token log-probabilities in the API's two formats: the completions' legacy `logprobs` object
and the chat's `logprobs.content` list.

The figures are the engine's (`TokenScores`: the model's log-softmax of its raw logits, float32,
before any sampling setting). A prompt is read after the start-of-text token EOT_ID, as
`textlstm eval` reads a text, so its first token has a log-probability of its own (predicted from
the start of text); only a token-id prompt that begins with EOT_ID itself has a first token that
nothing predicts, and that entry is null, as OpenAI and vLLM give the first token.

A token's string is its own text; a token whose bytes are not whole UTF-8 characters (a byte
token or a byte-level BPE piece of a character) is written "bytes:\\xe2\\x80" as OpenAI does. Its
text offset is where its text starts in the choice's text: the tokens that together spell one
character share the offset of that character, and the end-of-text token and the tokens that
spelled a stop string (cut from the text) start at or past the text's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import decoders

from textlstm.data.tokenizer import TextTokenizer
from textlstm.generation.decoding import DECODE_CONTEXT, TextDecoder
from textlstm.tokens import EOT_ID, is_byte_token

LOGPROB_FLOOR = -9999.0  # JSON has no -inf: what vLLM and OpenAI send for a token of probability 0


class TokenNames:
    """Each token's own bytes and the string the API shows for it, worked out once per id."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer
        self._byte_level = isinstance(tokenizer.hf.decoder, decoders.ByteLevel)
        self._special = set(tokenizer.hf.get_added_tokens_decoder())  # ids of <|pad|>, <|endoftext|>, ...
        self._known: dict[int, tuple[str, list[int]]] = {}

    def name(self, token: int) -> str:
        return self._entry(token)[0]

    def byte_values(self, token: int) -> list[int]:
        return self._entry(token)[1]

    def _entry(self, token: int) -> tuple[str, list[int]]:
        entry = self._known.get(token)
        if entry is None:
            raw = self._bytes_of(token)
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                name = "bytes:" + "".join(f"\\x{byte:02x}" for byte in raw)
            entry = self._known[token] = (name, list(raw))
        return entry

    def _bytes_of(self, token: int) -> bytes:
        piece = self.tokenizer.hf.id_to_token(token)
        if token in self._special:  # <|endoftext|>, <|pad|>: by name (decoding drops padding)
            return piece.encode("utf-8")
        if is_byte_token(piece):  # <0xE2>: a char tokenizer's byte fallback
            return bytes([int(piece[3:5], 16)])
        if self._byte_level:
            return bytes(BYTE_LEVEL_BYTES[char] for char in piece)
        return self.tokenizer.decode([token]).encode("utf-8")


def _byte_level_table() -> dict[str, int]:
    """The byte each character of a byte-level BPE token stands for: GPT-2's table, where the
    printable Latin-1 bytes stand for themselves and the others take the code points from 256 on."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\xa1"), ord("\xac") + 1),
        *range(ord("\xae"), ord("\xff") + 1),
    ]
    table = {chr(byte): byte for byte in printable}
    others = [byte for byte in range(256) if byte not in table.values()]
    table.update({chr(256 + n): byte for n, byte in enumerate(others)})
    return table


BYTE_LEVEL_BYTES = _byte_level_table()


@dataclass
class ScoredToken:
    id: int
    logprob: float | None  # None: nothing predicts it (a token-id prompt's leading end of text)
    top: list[tuple[int, float]] | None  # the most likely tokens there, most likely first
    offset: int  # where its text starts in the choice's text


class ChoiceTokens:
    """The scored tokens of one choice, in order: its echoed prompt's, then the generated ones."""

    def __init__(
        self,
        names: TokenNames,
        prompt_ids: Sequence[int],
        text_start: int,
        prompt_offsets: Sequence[int] | None = None,
        first_predicted: bool = True,
    ):
        """text_start: where the generated text starts in the choice's text (after an echoed prompt).
        prompt_offsets: where each prompt token's text starts, when the prompt is echoed with its
        scores; first_predicted: whether those scores cover its first token too."""
        self.names = names
        self.tokens: list[ScoredToken] = []
        self._prompt_ids, self._prompt_offsets, self._first_predicted = prompt_ids, prompt_offsets, first_predicted
        # Decoded as the engine decodes the generated tokens, to know where each one's text starts.
        self._decoder = TextDecoder(names.tokenizer, [int(i) for i in prompt_ids[-DECODE_CONTEXT:]])
        self._decoded = text_start
        self._sent = 0

    def take(self, scores) -> None:
        """Add the tokens of a TokenScores event."""
        figures = zip(scores.logprobs, scores.top_ids, scores.top_logprobs)
        if scores.prompt:
            ids, offsets = self._prompt_ids, self._prompt_offsets
            if not self._first_predicted:
                self.tokens.append(ScoredToken(int(ids[0]), None, None, offsets[0]))
                ids, offsets = ids[1:], offsets[1:]
            for token, offset, (logprob, top_ids, top_logprobs) in zip(ids, offsets, figures):
                self.tokens.append(ScoredToken(int(token), logprob, list(zip(top_ids, top_logprobs)), offset))
            return
        for token, (logprob, top_ids, top_logprobs) in zip(scores.ids, figures):
            self.tokens.append(ScoredToken(token, logprob, list(zip(top_ids, top_logprobs)), self._decoded))
            if token != EOT_ID:  # the end of text adds no text
                self._decoded += len(self._decoder.push(token))

    def unsent(self) -> list[ScoredToken]:
        """The tokens not handed out by an earlier call."""
        tokens, self._sent = self.tokens[self._sent :], len(self.tokens)
        return tokens

    def completion_logprobs(self, tokens: list[ScoredToken], top: int) -> dict:
        """The legacy object: top_logprobs holds the `top` most likely tokens and the chosen one
        (null when `top` is 0)."""
        return {
            "tokens": [self.names.name(t.id) for t in tokens],
            "token_logprobs": [_json_logprob(t.logprob) for t in tokens],
            "top_logprobs": [self._top_with_chosen(t, top) for t in tokens] if top else None,
            "text_offset": [t.offset for t in tokens],
        }

    def _top_with_chosen(self, token: ScoredToken, top: int) -> dict[str, float] | None:
        if token.logprob is None:
            return None
        most_likely = {self.names.name(i): _json_logprob(logprob) for i, logprob in token.top[:top]}
        most_likely.setdefault(self.names.name(token.id), _json_logprob(token.logprob))
        return most_likely

    def chat_content(self, tokens: list[ScoredToken], top: int) -> list[dict]:
        return [
            {**self._chat_entry(t.id, t.logprob), "top_logprobs": [self._chat_entry(i, lp) for i, lp in t.top[:top]]}
            for t in tokens
        ]

    def _chat_entry(self, token: int, logprob: float) -> dict:
        return {
            "token": self.names.name(token),
            "logprob": _json_logprob(logprob),
            "bytes": self.names.byte_values(token),
        }


def _json_logprob(logprob: float | None) -> float | None:
    return None if logprob is None else max(logprob, LOGPROB_FLOOR)


def prompt_text_and_offsets(tokenizer: TextTokenizer, ids: Sequence[int]) -> tuple[str, list[int]]:
    """The text of a token-id prompt, decoded piece by piece, and where each token's text starts in it."""
    decoder = TextDecoder(tokenizer)
    pieces, offsets, length = [], [], 0
    for token in ids:
        offsets.append(length)
        piece = decoder.push(int(token))
        pieces.append(piece)
        length += len(piece)
    pieces.append(decoder.flush())
    return "".join(pieces), offsets
