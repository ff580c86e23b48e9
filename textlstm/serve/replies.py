"""From a request's jobs to its reply: submitted to the engine, then its events streamed as
server-sent events (stream: true) or gathered into one JSON body, in the completions or the chat
format. Both read the events through one `ChoiceEvents`.

A stream that fails after it started ends with one error event in OpenAI's format; a whole reply
that fails is that error with its status: 503 when the server stops, 504 past the request's time,
500 for an error in the engine.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from textlstm.serve.engine import Event, Failed, Finished, ShutDown, TextPiece, TokenScores
from textlstm.serve.errors import APIError, error_body
from textlstm.serve.limits import check_request_size
from textlstm.serve.logprobs import ChoiceTokens, TokenNames
from textlstm.serve.schemas import SamplingFields
from textlstm.serve.security import client_key
from textlstm.serve.state import server_state
from textlstm.serve.submission import Job, Submission, TimedOut

DISCONNECT_POLL_SECONDS = 1.0  # how often a non-streaming request checks that its client is still there


async def respond(request: Request, body: SamplingFields, reply: Reply, jobs: list[Job]) -> Response:
    """Run `jobs` in the engine, within the request's limits and its key's quota, and answer with `reply`."""
    state = server_state(request.app)
    engine = state.engine
    if engine is None:
        raise APIError(503, "the server is not running", type="server_error")
    settings = state.model.settings
    generated = sum(job.options.max_tokens for job in jobs if job.generate)
    read = sum(len(job.prompt.read_ids) for job in jobs)
    check_request_size(generated, read, settings.max_request_tokens, settings.max_prompt_tokens)
    reply.follow(jobs, state.model.token_names)
    submission = Submission(engine, jobs, client_key(request), state.model.quota, settings.request_timeout)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        events = stream(submission, reply, include_usage)
        return StreamingResponse(events, media_type="text/event-stream", headers=headers)
    return await collect(request, submission, reply)


async def stream(submission: Submission, reply: Reply, include_usage: bool):
    """Server-sent events: a chunk per choice for all the text (and tokens) that arrived together, then [DONE].

    An echoed prompt comes first: with logprobs, in the chunk that carries its tokens, once it is read.
    """
    choices = ChoiceEvents(reply, submission.size)
    try:
        if reply.chat:
            for index in range(submission.size):
                yield _event(reply.chunk(index, None, None, role=True))
        for index, text in choices.opening().items():
            yield _event(reply.chunk(index, text, None))
        while submission.open:
            for index, text, reason in choices.add(await submission.next_events()):
                yield _event(reply.chunk(index, text, reason))
            if choices.failure is not None:
                error = failure_error(choices.failure)
                yield _event(error_body(error.message, error.type))
                return
        if include_usage:
            yield _event(reply.usage_chunk(choices.completion_tokens))
        yield "data: [DONE]\n\n"
    finally:
        submission.cancel()  # the client left, or all ended (then this does nothing)


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def collect(request: Request, submission: Submission, reply: Reply) -> Response:
    """The whole reply, once every choice has ended; 499 (sent to nobody) when the client has left."""
    choices = ChoiceEvents(reply, submission.size)
    choices.opening()
    loop = asyncio.get_running_loop()
    next_check = loop.time() + DISCONNECT_POLL_SECONDS
    try:
        while submission.open:
            try:
                events = await asyncio.wait_for(submission.next_events(), DISCONNECT_POLL_SECONDS)
            except TimeoutError:
                events = []
            if loop.time() >= next_check:
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody reads it: the client left
                next_check = loop.time() + DISCONNECT_POLL_SECONDS
            choices.add(events)
            if choices.failure is not None:
                raise failure_error(choices.failure)
    finally:
        submission.cancel()
    # As a JSONResponse: returned as a dict, FastAPI would first copy it through jsonable_encoder,
    # slow on a scored text's thousands of logprobs entries; the bytes sent are the same.
    texts = ["".join(parts) for parts in choices.texts]
    return JSONResponse(reply.whole(texts, choices.reasons, choices.completion_tokens))


def failure_error(failure: Failed) -> APIError:
    """The error a request gets when one of its sequences failed."""
    if isinstance(failure, TimedOut):
        return APIError(504, failure.message, type="server_error", code="request_timeout")
    if isinstance(failure, ShutDown):
        return APIError(503, failure.message, type="server_error")
    return APIError(500, failure.message, type="server_error")


class ChoiceEvents:
    """The engine's events for the choices of one request, gathered: each choice's text so far and
    its finish reason, its tokens (into the reply's ChoiceTokens), the tokens generated, and the
    failure that ends the request. The stream sends what each batch of events adds; the whole reply
    is what they add up to."""

    def __init__(self, reply: Reply, size: int):
        self.reply = reply
        self.texts: list[list[str]] = [[] for _ in range(size)]
        self.reasons: list[str | None] = [None] * size
        self.completion_tokens = 0
        self.failure: Failed | None = None

    def opening(self) -> dict[int, str]:
        """The text of each choice before any event: its echoed prompt, unless that comes with its
        tokens (with logprobs), once the prompt is read."""
        if not self.reply.echo or self.reply.tokens is not None:
            return {}
        for texts, prompt in zip(self.texts, self.reply.prompt_texts):
            texts.append(prompt)
        return dict(enumerate(self.reply.prompt_texts))

    def add(self, events: list[tuple[int | None, Event]]) -> list[tuple[int, str, str | None]]:
        """Take a batch of events: (choice, its new text, its finish reason if it has just finished) for
        each choice they were about, in order. A failure is kept in `failure`."""
        added: dict[int, list[str]] = {}
        for index, event in events:
            if isinstance(event, TextPiece):
                added.setdefault(index, []).append(event.text)
            elif isinstance(event, TokenScores):
                self.reply.tokens[index].take(event)
                texts = added.setdefault(index, [])
                if event.prompt:  # before any text of the choice: its echoed prompt comes with them
                    texts.append(self.reply.prompt_texts[index])
            elif isinstance(event, Finished):
                added.setdefault(index, [])
                self.reasons[index] = event.reason
                self.completion_tokens += event.completion_tokens
            else:
                self.failure = event
        for index, texts in added.items():
            self.texts[index] += texts
        return [(index, "".join(added[index]), self.reasons[index]) for index in sorted(added)]


@dataclass
class Reply:
    """The response bodies of one request, in the completions or the chat format."""

    chat: bool
    model: str
    prompt_tokens: int
    echo: bool = False  # completions: each choice's text starts with its prompt
    top: int | None = None  # with logprobs: how many most likely tokens at each position; None: no logprobs
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_texts: list[str] = field(default_factory=list)  # of each choice
    tokens: list[ChoiceTokens] | None = None  # of each choice, with logprobs

    def follow(self, jobs: list[Job], names: TokenNames) -> None:
        """Get ready for the choices of `jobs`."""
        self.prompt_texts = [job.prompt.text for job in jobs]
        if self.top is None:
            return
        self.tokens = []
        for job in jobs:
            prompt = job.prompt
            text_start = len(prompt.text) if self.echo else 0
            first_predicted = len(prompt.read_ids) > len(prompt.ids)  # read after a start-of-text token of its own
            self.tokens.append(ChoiceTokens(names, prompt.ids.tolist(), text_start, prompt.offsets, first_predicted))

    def chunk(self, index: int, text: str | None, reason: str | None, role: bool = False) -> dict:
        """A streamed chunk of choice `index`: its new text (and tokens), its finish reason when it has
        just finished; in a chat, role=True makes the chunk that opens the answer."""
        if not self.chat:
            choice = {"index": index, "text": text, "logprobs": self._logprobs(index), "finish_reason": reason}
            return self._envelope("text_completion", [choice])
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
        logprobs = None if role else self._logprobs(index)
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}
        return self._envelope("chat.completion.chunk", [choice])

    def usage_chunk(self, completion_tokens: int) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._envelope(kind, []), "usage": self._usage(completion_tokens)}

    def whole(self, texts: list[str], reasons: list[str | None], completion_tokens: int) -> dict:
        choices = []
        for i, (text, reason) in enumerate(zip(texts, reasons)):
            content = {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
            choices.append({"index": i, **content, "logprobs": self._logprobs(i, whole=True), "finish_reason": reason})
        kind = "chat.completion" if self.chat else "text_completion"
        return {**self._envelope(kind, choices), "usage": self._usage(completion_tokens)}

    def _envelope(self, kind: str, choices: list) -> dict:
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        return {
            "id": prefix + self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _logprobs(self, index: int, whole: bool = False) -> dict | None:
        """The logprobs of choice `index`: of all its tokens, or of those not sent yet."""
        if self.tokens is None:
            return None
        choice = self.tokens[index]
        tokens = choice.tokens if whole else choice.unsent()
        if self.chat:
            return {"content": choice.chat_content(tokens, self.top)}
        return choice.completion_logprobs(tokens, self.top)

    def _usage(self, completion_tokens: int) -> dict:
        total = self.prompt_tokens + completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}
