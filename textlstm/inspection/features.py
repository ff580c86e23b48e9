"""Features of a text that a cell might track, one value per character.

Each value is what holds after reading that character, as a model's state after reading it would
know: an opening quote is inside the quotes, the closing one is not; after a newline the position
in the line is 0. A feature is "on" where its value is above 0.

Built in (Karpathy, Johnson & Fei-Fei 2015 found cells for several of these in char LSTMs):

    inside_quotes       between double quotes: " toggles, “ opens and ” closes
    inside_brackets     inside ( ), [ ] or { }
    bracket_depth       how deep: each opener adds 1, each closer takes 1 (never below 0; kinds not matched)
    line_position       characters read on the current line
    chars_left_in_line  the line's usual length (the median of the text's non-empty lines) less the
                        position, 0 past it
    indentation         columns of blanks at the start of the current line read so far (a tab is 4)
    word_start          a letter, digit or _ right after something else (or at the start)
    sentence_start      the first letter or digit after . ! or ? and a blank (or at the start)
    code_comment        in a comment: # or // to the end of the line, /* to */ (not inside a string)
    code_string         in a string literal: '...', "...", triple-quoted, with backslash escapes; one
                        quoted on a single line ends at its newline; ' right after a letter or digit
                        is an apostrophe (don't) unless the letters are a string prefix (f'', rb'')

and a user's regular expression (`regex:PATTERN`), on for the characters of its matches.

Tokens: a token's value is its last character's, what the state after the token has read.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

import numpy as np

from textlstm.errors import TextlstmError

BRACKETS = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}
TAB_COLUMNS = 4
STRING_PREFIXES = {"r", "b", "u", "f", "rb", "br", "fr", "rf"}


@dataclass
class Feature:
    name: str
    values: np.ndarray  # [characters] float32

    @property
    def on(self) -> np.ndarray:
        return self.values > 0

    def per_token(self, ends: np.ndarray) -> np.ndarray:
        """The values [tokens] of tokens ending at `ends`: each token's last character's."""
        return self.values[np.clip(ends - 1, 0, len(self.values) - 1)]


def text_features(text: str, patterns: tuple[str, ...] | list[str] = ()) -> list[Feature]:
    """The built-in features of `text`, then one `regex:PATTERN` feature per pattern."""
    depth = bracket_depth(text)
    position = line_position(text)
    code_comment, code_string = code_regions(text)
    features = {
        "inside_quotes": inside_quotes(text),
        "inside_brackets": depth > 0,
        "bracket_depth": depth,
        "line_position": position,
        "chars_left_in_line": np.maximum(usual_line_length(text) - position, 0),
        "indentation": indentation(text),
        "word_start": word_starts(text),
        "sentence_start": sentence_starts(text),
        "code_comment": code_comment,
        "code_string": code_string,
    }
    found = [Feature(name, np.asarray(values, dtype=np.float32)) for name, values in features.items()]
    return found + [Feature(f"regex:{pattern}", regex_matches(text, pattern)) for pattern in patterns]


def inside_quotes(text: str) -> np.ndarray:
    values = np.zeros(len(text), dtype=np.float32)
    inside = False
    for i, char in enumerate(text):
        if char == '"':
            inside = not inside
        elif char in "“”":
            inside = char == "“"
        values[i] = inside
    return values


def bracket_depth(text: str) -> np.ndarray:
    values = np.zeros(len(text), dtype=np.float32)
    depth = 0
    for i, char in enumerate(text):
        depth = max(depth + BRACKETS.get(char, 0), 0)
        values[i] = depth
    return values


def line_position(text: str) -> np.ndarray:
    values = np.zeros(len(text), dtype=np.float32)
    position = 0
    for i, char in enumerate(text):
        position = 0 if char == "\n" else position + 1
        values[i] = position
    return values


def usual_line_length(text: str) -> float:
    lengths = [len(line) for line in text.split("\n") if line]
    return statistics.median(lengths) if lengths else 0.0


def indentation(text: str) -> np.ndarray:
    values = np.zeros(len(text), dtype=np.float32)
    columns, leading = 0, True
    for i, char in enumerate(text):
        if char == "\n":
            columns, leading = 0, True
        elif leading and char in " \t":
            columns = columns + 1 if char == " " else (columns // TAB_COLUMNS + 1) * TAB_COLUMNS
        else:
            leading = False
        values[i] = columns
    return values


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def word_starts(text: str) -> np.ndarray:
    return np.array(
        [_is_word(char) and (i == 0 or not _is_word(text[i - 1])) for i, char in enumerate(text)], dtype=np.float32
    )


def sentence_starts(text: str) -> np.ndarray:
    values = np.zeros(len(text), dtype=np.float32)
    ended, blank_after_end = True, True  # the start of the text starts a sentence
    for i, char in enumerate(text):
        if _is_word(char):
            values[i] = ended and blank_after_end
            ended = False
        elif char in ".!?":
            ended, blank_after_end = True, False
        elif char.isspace() and ended:
            blank_after_end = True
    return values


def code_regions(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(inside a comment, inside a string literal) per character, from one pass over `text`."""
    comment = np.zeros(len(text), dtype=np.float32)
    string = np.zeros(len(text), dtype=np.float32)
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            comment[i:end] = 1
            i = end
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            on_until, resume = (n, n) if close < 0 else (close + 1, close + 2)  # over once its / is read
            comment[i:on_until] = 1
            i = resume
        elif char in "'\"" and _opens_string(text, i):
            on_until, resume = _string_end(text, i)
            string[i:on_until] = 1
            i = resume
        else:
            i += 1
    return comment, string


def _opens_string(text: str, i: int) -> bool:
    if text[i] == '"':
        return True
    word_start = i
    while word_start > 0 and _is_word(text[word_start - 1]):
        word_start -= 1
    return word_start == i or text[word_start:i].lower() in STRING_PREFIXES


def _string_end(text: str, i: int) -> tuple[int, int]:
    """(where the string opening at `i` stops being on, where scanning goes on): at its closing
    quote's last character, at its line's end for an unclosed one-line string, or the text's end."""
    quote = text[i] * 3 if text.startswith(text[i] * 3, i) else text[i]
    j = i + len(quote)
    while j < len(text):
        if text[j] == "\\":
            j += 2
        elif text.startswith(quote, j):
            return j + len(quote) - 1, j + len(quote)
        elif text[j] == "\n" and len(quote) == 1:
            return j, j
        else:
            j += 1
    return len(text), len(text)


def regex_matches(text: str, pattern: str) -> np.ndarray:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise TextlstmError(f"bad --feature regular expression {pattern!r}: {error}") from None
    values = np.zeros(len(text), dtype=np.float32)
    for match in compiled.finditer(text):
        values[match.start() : match.end()] = 1
    return values
