"""The request bodies the server takes, checked strictly: a field it does not know, a value of the
wrong type or out of range is a 400 error that names the field.

OpenAI's parameters that mean something for this model are mapped (temperature, top_p, max_tokens,
stop, seed, n, stream, stream_options, user); top_k and repetition_penalty are extras; others
(logprobs, tools, presence_penalty, ...) are refused rather than silently ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from textlstm.config import SamplingOptions

MAX_TOKENS_LIMIT = 16_384  # the most tokens one choice may ask for
COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_MAX_TOKENS = 256  # the default for /v1/chat/completions, whose answers end at a blank line anyway
MAX_CHOICES = 16
MAX_STOPS = 4


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
    top_k: int = Field(0, ge=0)
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
    prompt: str | list[str] = Field(min_length=0)

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt):
        if isinstance(prompt, list) and not 1 <= len(prompt) <= MAX_CHOICES:
            raise ValueError(f"a list of prompts must hold 1 to {MAX_CHOICES} strings")
        return prompt

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else self.prompt


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
    return part in ("str", "int", "float", "bool") or part.startswith(("list[", "function-", "literal[", "TextPart", "Message"))
