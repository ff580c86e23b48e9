"""The request bodies the server takes, checked strictly: a field it does not know, a value of the
wrong type or out of range is a 400 error that names the field.

OpenAI's parameters that mean something for this model are mapped (temperature, top_p, max_tokens,
stop, seed, n, stream, stream_options, user; for completions echo and logprobs, and prompts as token
ids; for chat logprobs and top_logprobs); top_k and repetition_penalty are extras; others (tools,
presence_penalty, ...) are refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from textlstm.config import SamplingOptions
from textlstm.inspection.cells import PER_FEATURE

MAX_TOKENS_LIMIT = 16_384  # the most tokens one choice may ask for
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_MAX_TOKENS = 256  # the default for /v1/chat/completions, whose answers end at a blank line anyway
MAX_CHOICES = 16
MAX_PROMPTS = 64  # prompts in one completions request: lm-evaluation-harness sends batches
MAX_STOPS = 4
MAX_LOGPROBS = 20  # the most likely tokens a request may ask for at each position
MAX_CELLS_PER_FEATURE = 10  # /v1/inspect: each reported cell is one more row of its ablation


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class StreamOptions(Strict):
    include_usage: bool = False


class SamplingFields(Strict):
    model: str
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, ge=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)
    user: str | None = None  # accepted and not used, as OpenAI's own servers do for most purposes
    top_k: int = Field(0, ge=0, lt=2**63)  # the sampler holds it in an int64; past the vocabulary it keeps every token
    repetition_penalty: float = Field(1.0, gt=0, le=100)

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop):
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop strings")
        if any(not s for s in stops):
            raise ValueError("a stop string must not be empty")
        return stop

    def sampling_options(self, default_max_tokens: int, choice: int = 0) -> SamplingOptions:
        """The options of choice number `choice`: with a seed, choice i draws from seed + i."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingOptions(
            # top_p 0 keeps only the most likely token: that is greedy decoding.
            temperature=0.0 if self.top_p == 0 else self.temperature,
            top_k=self.top_k,
            top_p=self.top_p or 1.0,
            repetition_penalty=self.repetition_penalty,
            max_tokens=self.max_tokens or default_max_tokens,
            stop=tuple(stops),
            seed=None if self.seed is None else (self.seed + choice) % 2**64,
        )


class CompletionRequest(SamplingFields):
    # A text, texts, a text as token ids, or texts as token ids.
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0, le=MAX_TOKENS_LIMIT)  # 0 with echo: score the prompt only
    echo: bool = False  # the text starts with the prompt (and with logprobs, so do the tokens)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # each token's, and this many most likely

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, prompt):
        if (
            isinstance(prompt, str)
            or _all(prompt, str)
            or _all(prompt, int)
            or (isinstance(prompt, list) and all(_all(p, int) for p in prompt))
        ):
            return prompt
        raise ValueError("must be a string, a list of strings, a list of token ids or a list of lists of token ids")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt):
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            return prompt
        if not 1 <= len(prompt) <= MAX_PROMPTS:
            raise ValueError(f"a list of prompts must hold 1 to {MAX_PROMPTS} prompts")
        if any(isinstance(p, list) and not p for p in prompt):
            raise ValueError("a prompt of token ids must hold at least one id")
        return prompt

    @property
    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text or a list of token ids."""
        if isinstance(self.prompt, str) or isinstance(self.prompt[0], int):
            return [self.prompt]
        return self.prompt


def _all(items, kind: type) -> bool:
    """Whether `items` is a list of `kind` (a bool is not an int here)."""
    return isinstance(items, list) and all(isinstance(item, kind) and not isinstance(item, bool) for item in items)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)  # the newer name of max_tokens
    # An extra: the server keeps this conversation's LSTM state, so the next turn reads only what is new.
    conversation_id: str | None = Field(None, min_length=1, max_length=200)
    logprobs: bool = False  # the answer's tokens with their log-probabilities
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # and this many most likely at each

    @field_validator("messages")
    @classmethod
    def _ends_with_the_user(cls, messages):
        if messages[-1].role != "user":
            raise ValueError("the last message must be the user's: the answer is to it")
        return messages

    def sampling_options(self, default_max_tokens: int, choice: int = 0) -> SamplingOptions:
        if self.max_completion_tokens is not None and self.max_tokens is None:
            default_max_tokens = self.max_completion_tokens
        return super().sampling_options(default_max_tokens, choice)


class TokenizeRequest(Strict):
    model: str | None = None  # lm-evaluation-harness sends none
    prompt: str
    # As vLLM: true lists the special token the model reads first, here the start-of-text token.
    add_special_tokens: bool = True


class DetokenizeRequest(Strict):
    model: str | None = None
    tokens: list[int]


class InspectRequest(Strict):
    model: str | None = None
    text: str = Field(min_length=1)
    per_feature: int = Field(PER_FEATURE, ge=1, le=MAX_CELLS_PER_FEATURE)  # the best cells reported for each feature


def describe(error: ValidationError) -> tuple[str, str | None]:
    """One line for the first problem in `error`, and the parameter it is about."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if not _is_type_name(str(part))]
    param = ".".join(location) or None
    if first["type"] == "extra_forbidden":
        return f"unsupported parameter: {param}", param
    if first["type"] == "missing":
        return f"missing required parameter: {param}", param
    message = first["msg"].removeprefix("Value error, ")
    return (f"{param}: {message}" if param else message), param


def _is_type_name(part: str) -> bool:
    """pydantic puts the union member tried into an error's location (`stop.list[str].0`): leave it out."""
    return part in ("str", "int", "float", "bool") or part.startswith(
        ("list[", "function-", "literal[", "TextPart", "Message")
    )
