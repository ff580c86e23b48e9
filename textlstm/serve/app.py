"""The HTTP side: OpenAI-compatible routes over the engine, the chat page, and a metrics route.

    POST /v1/completions        continue a prompt (or a list of prompts), or score it (echo, logprobs)
    POST /v1/chat/completions   answer the last user message of a conversation
    GET  /v1/models             the one model served
    POST /tokenize              a text's token ids, as /v1/completions reads it
    POST /detokenize            token ids' text
    GET  /tokenizer_info        the special tokens (what lm-evaluation-harness's remote tokenizer asks)
    GET  /health                200 when it serves, 503 while the model loads
    GET  /metrics               sequences active, tokens generated, conversations kept (Prometheus)
    GET  /metrics.json          the same figures as JSON
    GET  /                      a page to chat, generate and score text

Before the routes, security.py checks who asks (Host, Origin, API key, content type). An app made
by `create_loading_app` listens before its model is loaded: it answers 503 until then.

Errors are JSON in OpenAI's format, {"error": {"message", "type", "param", "code"}}, with a 4xx
status for a bad request; a stream that fails after it started ends with one such error event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from textlstm.config import SamplingOptions, ServeSettings  # ServeSettings: also imported from here
from textlstm.generation.generator import TextGenerator
from textlstm.model.network import State
from textlstm.serve.conversations import ConversationStore, KeptState, conversation_text
from textlstm.serve.engine import (
    Engine, EngineBusy, EngineStopped, Failed, Finished, GenerationRequest, ShutDown, TextPiece, TokenScores,
)
from textlstm.serve.errors import APIError, error_body
from textlstm.serve.limits import KeyQuota, check_request_size
from textlstm.serve.logprobs import ChoiceTokens, TokenNames, prompt_text_and_offsets
from textlstm.serve.metrics import CONTENT_TYPE, prometheus_text
from textlstm.serve.schemas import (
    CHAT_MAX_TOKENS, COMPLETION_MAX_TOKENS, ChatRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest, describe,
)
from textlstm.serve.security import AccessSettings, install
from textlstm.serve.state import ServedModel, ServerState, server_state
from textlstm.tokens import EOT, EOT_ID, PAD, UNK
from textlstm.turns import TurnFormat

log = logging.getLogger("textlstm.serve")

DISCONNECT_POLL_SECONDS = 1.0  # how often a non-streaming request checks that its client is still there
# Work on a request's body takes a worker thread beyond these sizes (each some milliseconds of work on
# the event loop, where it would hold every other client); below them a thread hop costs more than it saves.
INLINE_BODY_BYTES = 64 * 2**10  # parsed and checked (a body of 3 MB of token ids: 0.3 s)
INLINE_PROMPT_CHARS = 20_000  # tokenized
INLINE_PROMPT_IDS = 5_000  # token ids checked and decoded


def create_app(generator: TextGenerator, settings: ServeSettings, access: AccessSettings | None = None) -> FastAPI:
    """The ASGI app serving `generator`; its engine thread starts and stops with the app's lifespan."""
    app = _new_app(ServerState(access or AccessSettings(), served=ServedModel.of(generator, settings)))
    return app


def create_loading_app(load: Callable[[], tuple[TextGenerator, ServeSettings]], access: AccessSettings | None = None) -> FastAPI:
    """An app that answers as soon as it starts, /health and every other route with 503, while
    `load()` runs in a thread of its own; then it serves what load returned. Its state's `loaded` is
    set once load has returned or failed (`load_error`: its exception)."""
    return _new_app(ServerState(access or AccessSettings(), load=load))


def _new_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="textlstm", lifespan=_lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(router)
    app.add_middleware(_ServedOnceLoaded)
    install(app, state.access)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state = server_state(app)
    loop = asyncio.get_running_loop()
    if state.load is None:
        _start_engine(state, loop)
    else:
        threading.Thread(target=_load, args=(state, loop), name="textlstm-load", daemon=True).start()
    try:
        yield
    finally:
        state.stopping = True
        if state.engine is not None:
            state.engine.shutdown()
            log.info("engine stopped; %d sequences active", state.engine.stats()["sequences"])


def _load(state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
    """state.load() (in its own thread), then serving what it returned (on the event loop)."""
    try:
        generator, settings = state.load()
    except Exception as error:  # the command reports it and stops
        state.load_error = error
        state.loaded.set()
        return
    try:
        loop.call_soon_threadsafe(_serve_loaded, state, generator, settings, loop)
    except RuntimeError:  # the loop has closed: the server stopped while the model loaded
        state.loaded.set()


def _serve_loaded(state: ServerState, generator: TextGenerator, settings: ServeSettings,
                  loop: asyncio.AbstractEventLoop) -> None:
    if not state.stopping:
        state.served = ServedModel.of(generator, settings)
        _start_engine(state, loop)
    state.loaded.set()


def _start_engine(state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
    settings, generator = state.model.settings, state.model.generator
    engine = Engine(
        generator.model,
        generator.tokenizer,
        deliver=lambda pairs: loop.call_soon_threadsafe(_dispatch, pairs),
        max_sequences=settings.max_sequences,
        prompt_chunk=settings.prompt_chunk,
        threads=settings.threads,
    )
    engine.start()
    state.engine = engine  # last: from now on the app serves


def _dispatch(pairs) -> None:
    for on_event, event in pairs:
        on_event(event)


class _ServedOnceLoaded:
    """ASGI middleware: until the engine runs, every route but /health answers 503."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        state = server_state(scope["app"]) if scope["type"] == "http" else None
        if state is None or state.engine is not None or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        if state.load_error is not None:
            message = f"the model failed to load: {state.load_error}"
        else:
            message = "the model is loading: try again when /health answers 200"
        await JSONResponse(error_body(message, "server_error", None, "model_not_loaded"), status_code=503)(scope, receive, send)


def _served(request: Request) -> ServedModel:
    return server_state(request.app).model


def _client_key(request: Request) -> int | None:
    """The number of the API key the request came with (security.py); None when the server asks for none."""
    return getattr(request.state, "client_key", None)


# --- errors --------------------------------------------------------------------------------------


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.type, error.param, error.code), status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
    return JSONResponse(error_body(f"{error.detail}: {request.method} {request.url.path}", kind), status_code=error.status_code)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse(error_body(f"internal error: {type(error).__name__}", "server_error"), status_code=500)


async def _read_body(request: Request, schema):
    """The request body as `schema`, read up to the size limit."""
    limit = _served(request).settings.max_request_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body is over the limit of {limit} bytes")
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise APIError(413, f"the request body is over the limit of {limit} bytes")
    except ClientDisconnect:  # or the server closed its connection as it stopped: the answer goes nowhere
        raise APIError(400, "the client left before it sent the whole request body") from None
    if len(data) <= INLINE_BODY_BYTES:
        return _parse_body(data, schema)
    return await run_in_threadpool(_parse_body, data, schema)


def _parse_body(data: bytearray, schema):
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise APIError(400, f"the request body is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise APIError(400, "the request body must be a JSON object")
    try:
        return schema.model_validate(raw)
    except ValidationError as error:
        message, param = describe(error)
        raise APIError(400, message, param=param) from None


def _check_model(name: str, request: Request) -> None:
    served = _served(request).settings.model_name
    if name != served:
        raise APIError(404, f"the model {name!r} does not exist: this server has {served!r}", param="model", code="model_not_found")


# --- routes --------------------------------------------------------------------------------------

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("textlstm.serve").joinpath("page.html").read_text(encoding="utf-8"))


@router.get("/v1/models")
async def models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(request)]}


@router.get("/v1/models/{name}")
async def model(name: str, request: Request) -> dict:
    _check_model(name, request)
    return _model_card(request)


def _model_card(request: Request) -> dict:
    return {"id": _served(request).settings.model_name, "object": "model", "created": 0, "owned_by": "textlstm"}


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = server_state(request.app)
    if state.engine is not None:
        return JSONResponse({"status": "ok"})
    status = "loading" if state.load_error is None else "failed"
    return JSONResponse({"status": status}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(prometheus_text(server_state(request.app).registry), media_type=CONTENT_TYPE)


@router.get("/metrics.json")
async def metrics_json(request: Request) -> dict:
    return server_state(request.app).figures()


@router.post("/v1/completions")
async def completions(request: Request):
    body: CompletionRequest = await _read_body(request, CompletionRequest)
    _check_model(body.model, request)
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens 0 generates nothing: use it with echo to score the prompt", param="max_tokens")
    scored_prompt = body.echo and body.logprobs is not None
    prompts = [await _completion_prompt(request, prompt, body.echo, scored_prompt) for prompt in body.prompts]
    jobs = [
        _Job(prompt, body.sampling_options(COMPLETION_MAX_TOKENS, choice), logprobs=body.logprobs,
             prompt_logprobs=body.logprobs if scored_prompt else None, generate=body.max_tokens != 0)
        for prompt in prompts
        for choice in range(body.n)
    ]
    reply = _Reply(chat=False, model=body.model, prompt_tokens=sum(len(p.ids) for p in prompts), echo=body.echo, top=body.logprobs)
    return await _respond(request, body, reply, jobs)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    body: ChatRequest = await _read_body(request, ChatRequest)
    _check_model(body.model, request)
    conversation_id = body.conversation_id
    if conversation_id is not None and body.n > 1:
        raise APIError(400, "conversation_id keeps one answer's state: use it with n = 1", param="n")
    turn_format: TurnFormat = _served(request).settings.turn_format
    text = conversation_text([(m.role, m.text) for m in body.messages], turn_format)
    prompt = await _prepare_soon(request, text, conversation_id)
    keep = prompt.conversation.keep_answer if prompt.conversation is not None else None
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    top = (body.top_logprobs or 0) if body.logprobs else None
    jobs = []
    for choice in range(body.n):
        options = body.sampling_options(CHAT_MAX_TOKENS, choice)
        jobs.append(_Job(prompt, dataclasses.replace(options, stop=options.stop + turn_format.stops()), keep, logprobs=top))
    return await _respond(request, body, _Reply(chat=True, model=body.model, prompt_tokens=len(prompt.ids), top=top), jobs)


@router.post("/tokenize")
async def tokenize(request: Request) -> dict:
    """The token ids /v1/completions reads for this text: with add_special_tokens, the start-of-text
    token first (all that the model reads), else the text's own. Either list, sent back as a prompt,
    is read the same way. max_model_len is null: an LSTM reads any length."""
    body: TokenizeRequest = await _read_body(request, TokenizeRequest)
    if body.model is not None:
        _check_model(body.model, request)
    prompt = await _prepare_soon(request, body.prompt, None)
    ids = (prompt.read_ids if body.add_special_tokens else prompt.ids).tolist()
    return {"tokens": ids, "count": len(ids), "max_model_len": None}


@router.post("/detokenize")
async def detokenize(request: Request) -> dict:
    body: DetokenizeRequest = await _read_body(request, DetokenizeRequest)
    if body.model is not None:
        _check_model(body.model, request)
    if len(body.tokens) <= INLINE_PROMPT_IDS:
        return {"prompt": _detokenized(request, body.tokens)}
    return {"prompt": await run_in_threadpool(_detokenized, request, body.tokens)}


def _detokenized(request: Request, ids: list[int]) -> str:
    _check_token_ids(request, ids, "tokens")
    return _served(request).generator.tokenizer.decode(ids)


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request) -> dict:
    tokenizer = _served(request).generator.tokenizer
    return {
        "tokenizer_class": "textlstm",
        "eos_token": EOT,
        "eos_token_id": EOT_ID,
        "bos_token": None,  # a text starts after the end-of-text token: eos is also where reading starts
        "pad_token": PAD,
        "unk_token": UNK if tokenizer.unk_id is not None else None,
        "vocab_size": tokenizer.vocab_size,
        "model_max_length": None,  # an LSTM reads any length
    }


# --- from a request to the engine and back --------------------------------------------------------


@dataclass
class _Prompt:
    ids: torch.Tensor  # the whole prompt's tokens
    read_ids: torch.Tensor  # what the model reads: all of it after end of text, or what a kept state has not read
    state: State | None
    text: str = ""  # the prompt as text, when it is echoed
    offsets: list[int] | None = None  # where each token's text starts in `text`, when its tokens are echoed
    conversation: _Conversation | None = None  # a chat's kept conversation; `state` is the one found for it

    def admit(self) -> None:
        """Once its request is admitted: the kept state of its conversation taken out of the store, or
        where another request took it meanwhile, the whole text read instead."""
        if self.conversation is not None and self.conversation.take() is None and self.state is not None:
            self.read_ids, self.state = torch.cat([torch.tensor([EOT_ID]), self.ids]), None


@dataclass
class _Conversation:
    """A chat request's conversation_id: the state found for its text when its prompt is read, taken
    from the store once the request is admitted, and put back if the request ends without an answer."""

    store: ConversationStore
    client: int | None
    id: str
    text: str
    decode: Callable[[list[int]], str]
    found: KeptState | None
    taken: KeptState | None = None
    answered: bool = False

    def take(self) -> KeptState | None:
        self.taken = self.store.take(self.client, self.id, self.found)
        return self.taken

    def keep_answer(self, state: State, read_ids: list[int]) -> None:
        """The engine's on_final_state (in its thread): the state after the answer, kept for the next turn."""
        self.store.keep(self.client, self.id, state, self.text + self.decode(read_ids))
        self.answered = True

    def end(self) -> None:
        """Its request has ended: the state it took goes back unless an answer replaced it."""
        if self.taken is not None and not self.answered:
            self.store.put_back(self.client, self.id, self.taken)
            self.taken = None


async def _prepare_soon(request: Request, text: str, conversation_id: str | None, with_offsets: bool = False) -> _Prompt:
    if len(text) <= INLINE_PROMPT_CHARS:
        return _prepare(request, text, conversation_id, with_offsets)
    return await run_in_threadpool(_prepare, request, text, conversation_id, with_offsets)


def _prepare(request: Request, text: str, conversation_id: str | None, with_offsets: bool = False) -> _Prompt:
    """Tokenize a prompt (in a worker thread: a long one takes a while) and find a kept state for it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "the text holds a lone surrogate (\\ud800-\\udfff): not valid Unicode") from None
    tokenizer = _served(request).generator.tokenizer
    offsets = None
    if with_offsets:
        encoding = tokenizer.hf.encode(text, add_special_tokens=False)
        ids, offsets = torch.tensor(encoding.ids, dtype=torch.long), [start for start, _ in encoding.offsets]
    else:
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # not kept as a list: 36 bytes an id
    if conversation_id is None:
        return _Prompt(ids, torch.cat([torch.tensor([EOT_ID]), ids]), None, text, offsets)
    store = _served(request).conversations
    client = _client_key(request)
    found = store.find(client, conversation_id, text)
    conversation = _Conversation(store, client, conversation_id, text, tokenizer.decode, found)
    if found is None:
        return _Prompt(ids, torch.cat([torch.tensor([EOT_ID]), ids]), None, text, conversation=conversation)
    rest = torch.tensor(tokenizer.encode(text[found.covered_chars :]), dtype=torch.long)
    return _Prompt(ids, rest, found.state, text, conversation=conversation)


async def _completion_prompt(request: Request, prompt: str | list[int], echo: bool, with_offsets: bool) -> _Prompt:
    """A completion's prompt, a text or token ids. Token ids are read after the start-of-text token
    like a text, unless they begin with it (EOT_ID): then they are read as they are."""
    if isinstance(prompt, str):
        return await _prepare_soon(request, prompt, None, with_offsets)
    if len(prompt) <= INLINE_PROMPT_IDS:
        return _token_id_prompt(request, prompt, echo, with_offsets)
    return await run_in_threadpool(_token_id_prompt, request, prompt, echo, with_offsets)


def _token_id_prompt(request: Request, prompt: list[int], echo: bool, with_offsets: bool) -> _Prompt:
    _check_token_ids(request, prompt, "prompt")
    ids = torch.tensor(prompt, dtype=torch.long)
    read_ids = ids if prompt[0] == EOT_ID else torch.cat([torch.tensor([EOT_ID]), ids])
    text, offsets = prompt_text_and_offsets(_served(request).generator.tokenizer, prompt) if echo else ("", None)
    return _Prompt(ids, read_ids, None, text, offsets if with_offsets else None)


def _check_token_ids(request: Request, ids: list[int], param: str) -> None:
    vocab_size = _served(request).generator.tokenizer.vocab_size
    wrong = next((i for i in ids if not 0 <= i < vocab_size), None)
    if wrong is not None:
        raise APIError(400, f"{param}: token id {wrong} is not in the vocabulary (ids 0 to {vocab_size - 1})", param=param)


@dataclass
class _Job:
    """One choice to run: its prompt, its settings, and what it reports besides text."""

    prompt: _Prompt
    options: SamplingOptions
    keep: object = None  # on_final_state, for a kept conversation
    logprobs: int | None = None  # TokenScores of each token picked, with this many most likely
    prompt_logprobs: int | None = None  # and of the prompt's tokens
    generate: bool = True


@dataclass(frozen=True)
class _TimedOut(Failed):
    """The request ran past ServeSettings.request_timeout: its sequences were stopped."""


def _failure_error(failure: Failed) -> APIError:
    """The error a request gets when one of its sequences failed."""
    if isinstance(failure, _TimedOut):
        return APIError(504, failure.message, type="server_error", code="request_timeout")
    if isinstance(failure, ShutDown):
        return APIError(503, failure.message, type="server_error")
    return APIError(500, failure.message, type="server_error")


class _Run:
    """The choices of one request in the engine; their events arrive on an asyncio queue.

    They count against the client's quota until the run ends (`cancel`) or its time is up: at
    `timeout` seconds the run stops its sequences itself and sends _TimedOut, so a response that
    never ran (its client left before it started) holds nothing for longer. Admitted, the request
    takes its kept conversation's state (`_Prompt.admit`); ended without an answer, it puts it back.
    """

    def __init__(self, engine: Engine, jobs: list[_Job], client: int | None = None, quota: KeyQuota | None = None,
                 timeout: float | None = None):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.size = len(jobs)
        self.open = len(jobs)
        self.handles = []
        self.client, self.quota, self.held = client, quota, 0
        self.deadline = None
        self.prompts = list({id(job.prompt): job.prompt for job in jobs}.values())
        if quota is not None:
            quota.take(client, len(jobs))
            self.held = len(jobs)
        for prompt in self.prompts:
            prompt.admit()
        try:
            for index, job in enumerate(jobs):
                on_event = lambda event, index=index: self.queue.put_nowait((index, event))  # noqa: E731
                prompt = job.prompt
                request = GenerationRequest(
                    prompt.read_ids, job.options, on_event, prompt.state, prompt.ids, prompt.ids, job.keep,
                    logprobs=job.logprobs, prompt_logprobs=job.prompt_logprobs, generate=job.generate,
                )
                self.handles.append(engine.submit(request))
        except EngineBusy:
            self.cancel()
            raise APIError(429, "the server is at its limit of active sequences: try again shortly", type="rate_limit_error") from None
        except EngineStopped:
            self.cancel()
            raise APIError(503, "the server is shutting down", type="server_error") from None
        if timeout:
            self.deadline = asyncio.get_running_loop().call_later(timeout, self._time_out, timeout)

    def _time_out(self, timeout: float) -> None:
        self.cancel()
        message = f"the request ran past this server's limit of {timeout:g} seconds (--request-timeout): its sequences were stopped"
        self.queue.put_nowait((None, _TimedOut(message)))

    async def next_events(self) -> list[tuple[int, object]]:
        """The events that have arrived, at least one."""
        events = [await self.queue.get()]
        while not self.queue.empty():
            events.append(self.queue.get_nowait())
        self.open -= sum(isinstance(event, (Finished, Failed)) for _, event in events)
        return events

    def cancel(self) -> None:
        """Stop every sequence still running (none when all ended), give back the quota and a kept
        conversation's state that no answer replaced."""
        for handle in self.handles:
            handle.cancel()
        for prompt in self.prompts:
            if prompt.conversation is not None:
                prompt.conversation.end()
        if self.deadline is not None:
            self.deadline.cancel()
        if self.held:
            self.quota.give_back(self.client, self.held)
            self.held = 0


async def _respond(request: Request, body, reply: _Reply, jobs: list[_Job]):
    state = server_state(request.app)
    engine = state.engine
    if engine is None:
        raise APIError(503, "the server is not running", type="server_error")
    settings = state.model.settings
    generated = sum(job.options.max_tokens for job in jobs if job.generate)
    check_request_size(generated, sum(len(job.prompt.read_ids) for job in jobs), settings.max_request_tokens, settings.max_prompt_tokens)
    reply.follow(jobs, state.model.token_names)
    run = _Run(engine, jobs, _client_key(request), state.model.quota, settings.request_timeout)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_stream(run, reply, include_usage), media_type="text/event-stream", headers=headers)
    return await _collect(request, run, reply)


async def _stream(run: _Run, reply: _Reply, include_usage: bool):
    """Server-sent events: a chunk per choice for all the text (and tokens) that arrived together, then [DONE].

    An echoed prompt comes first: with logprobs, in the chunk that carries its tokens, once it is read.
    """
    choices = _ChoiceEvents(reply, run.size)
    try:
        if reply.chat:
            for index in range(run.size):
                yield _event(reply.chunk(index, None, None, role=True))
        for index, text in choices.opening().items():
            yield _event(reply.chunk(index, text, None))
        while run.open:
            for index, text, reason in choices.add(await run.next_events()):
                yield _event(reply.chunk(index, text, reason))
            if choices.failure is not None:
                error = _failure_error(choices.failure)
                yield _event(error_body(error.message, error.type))
                return
        if include_usage:
            yield _event(reply.usage_chunk(choices.completion_tokens))
        yield "data: [DONE]\n\n"
    finally:
        run.cancel()  # the client left, or all ended (then this does nothing)


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _collect(request: Request, run: _Run, reply: _Reply):
    choices = _ChoiceEvents(reply, run.size)
    choices.opening()
    loop = asyncio.get_running_loop()
    next_check = loop.time() + DISCONNECT_POLL_SECONDS
    try:
        while run.open:
            try:
                events = await asyncio.wait_for(run.next_events(), DISCONNECT_POLL_SECONDS)
            except asyncio.TimeoutError:
                events = []
            if loop.time() >= next_check:
                if await request.is_disconnected():
                    return Response(status_code=499)  # nobody reads it: the client left
                next_check = loop.time() + DISCONNECT_POLL_SECONDS
            choices.add(events)
            if choices.failure is not None:
                raise _failure_error(choices.failure)
    finally:
        run.cancel()
    # As a JSONResponse: returned as a dict, FastAPI would first copy it through jsonable_encoder,
    # slow on a scored text's thousands of logprobs entries; the bytes sent are the same.
    return JSONResponse(reply.whole(["".join(t) for t in choices.texts], choices.reasons, choices.completion_tokens))


class _ChoiceEvents:
    """The engine's events for the choices of one request, gathered: each choice's text so far and
    its finish reason, its tokens (into the reply's ChoiceTokens), the tokens generated, and the
    failure that ends the request. The stream sends what each batch of events adds; the whole reply
    is what they add up to."""

    def __init__(self, reply: _Reply, size: int):
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

    def add(self, events: list[tuple[int | None, object]]) -> list[tuple[int, str, str | None]]:
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
class _Reply:
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

    def follow(self, jobs: list[_Job], names: TokenNames) -> None:
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

    def _envelope(self, kind: str, choices: list) -> dict:
        prefix = "chatcmpl-" if self.chat else "cmpl-"
        return {"id": prefix + self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def _logprobs(self, index: int, whole: bool = False) -> dict | None:
        """The logprobs of choice `index`: of all its tokens, or of those not sent yet."""
        if self.tokens is None:
            return None
        choice = self.tokens[index]
        tokens = choice.tokens if whole else choice.unsent()
        if self.chat:
            return {"content": choice.chat_content(tokens, self.top)}
        return choice.completion_logprobs(tokens, self.top)

    def chunk(self, index: int, text: str | None, reason: str | None, role: bool = False) -> dict:
        if not self.chat:
            logprobs = self._logprobs(index)
            return self._envelope("text_completion", [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}])
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
        logprobs = None if role else self._logprobs(index)
        return self._envelope("chat.completion.chunk", [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}])

    def usage(self, completion_tokens: int) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": self.prompt_tokens + completion_tokens}

    def usage_chunk(self, completion_tokens: int) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._envelope(kind, []), "usage": self.usage(completion_tokens)}

    def whole(self, texts: list[str], reasons: list[str | None], completion_tokens: int) -> dict:
        if self.chat:
            choices = [
                {"index": i, "message": {"role": "assistant", "content": text}, "logprobs": self._logprobs(i, whole=True), "finish_reason": reason}
                for i, (text, reason) in enumerate(zip(texts, reasons))
            ]
            return {**self._envelope("chat.completion", choices), "usage": self.usage(completion_tokens)}
        choices = [
            {"index": i, "text": text, "logprobs": self._logprobs(i, whole=True), "finish_reason": reason}
            for i, (text, reason) in enumerate(zip(texts, reasons))
        ]
        return {**self._envelope("text_completion", choices), "usage": self.usage(completion_tokens)}
