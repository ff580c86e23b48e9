"""The routes: OpenAI-compatible completions and chat over the engine, the tokenizer's, the chat
page, health and metrics.

    POST /v1/completions        continue a prompt (or a list of prompts), or score it (echo, logprobs)
    POST /v1/chat/completions   answer the last user message of a conversation
    GET  /v1/models             the one model served
    POST /tokenize              a text's token ids, as /v1/completions reads it
    POST /detokenize            token ids' text
    GET  /tokenizer_info        the special tokens (what lm-evaluation-harness's remote tokenizer asks)
    GET  /health                200 when it serves, 503 while the model loads
    GET  /metrics               sequences active, tokens generated, conversations kept (Prometheus)
    GET  /metrics.json          the same figures as JSON
    GET  /                      a page to chat, generate, score text and look at the model's cells

POST /v1/inspect, what the page's Cells tab shows, is in inspect_routes.py.

Each route reads its body (bodies.py), makes its prompts (prompts.py) and jobs, and answers
through replies.py. Errors are JSON in OpenAI's format, {"error": {"message", "type", "param",
"code"}}, with a 4xx status for a bad request.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from textlstm.serve.bodies import Schema, read_body
from textlstm.serve.conversations import conversation_text
from textlstm.serve.errors import APIError
from textlstm.serve.metrics import CONTENT_TYPE, prometheus_text
from textlstm.serve.prompts import completion_prompt, conversation_prompt, detokenized, text_prompt
from textlstm.serve.replies import Reply, respond
from textlstm.serve.schemas import (
    CHAT_MAX_TOKENS,
    COMPLETION_MAX_TOKENS,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    TokenizeRequest,
)
from textlstm.serve.security import client_key
from textlstm.serve.state import ServedModel, server_state
from textlstm.serve.submission import Job
from textlstm.tokens import EOT, EOT_ID, PAD, UNK

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("textlstm.serve").joinpath("page.html").read_text(encoding="utf-8"))


@router.get("/v1/models")
async def models(request: Request) -> dict:
    return {"object": "list", "data": [_model_card(request)]}


@router.get("/v1/models/{name}")
async def model(name: str, request: Request) -> dict:
    check_model(name, request)
    return _model_card(request)


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
async def completions(request: Request) -> Response:
    body = await _body(request, CompletionRequest)
    check_model(body.model, request)
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens 0 generates nothing: use it with echo to score the prompt", param="max_tokens")
    scored_prompt = body.echo and body.logprobs is not None
    tokenizer = _served(request).generator.tokenizer
    prompts = [await completion_prompt(tokenizer, prompt, body.echo, scored_prompt) for prompt in body.prompts]
    jobs = [
        Job(
            prompt,
            body.sampling_options(COMPLETION_MAX_TOKENS, choice),
            logprobs=body.logprobs,
            prompt_logprobs=body.logprobs if scored_prompt else None,
            generate=body.max_tokens != 0,
        )
        for prompt in prompts
        for choice in range(body.n)
    ]
    prompt_tokens = sum(len(p.ids) for p in prompts)
    reply = Reply(chat=False, model=body.model, prompt_tokens=prompt_tokens, echo=body.echo, top=body.logprobs)
    return await respond(request, body, reply, jobs)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = await _body(request, ChatRequest)
    check_model(body.model, request)
    if body.conversation_id is not None and body.n > 1:
        raise APIError(400, "conversation_id keeps one answer's state: use it with n = 1", param="n")
    served = _served(request)
    turn_format, tokenizer = served.settings.turn_format, served.generator.tokenizer
    text = conversation_text([(m.role, m.text) for m in body.messages], turn_format)
    if body.conversation_id is None:
        prompt = await text_prompt(tokenizer, text)
    else:
        conversations, client = served.conversations, client_key(request)
        prompt = await conversation_prompt(tokenizer, text, conversations, client, body.conversation_id)
    keep = prompt.conversation.keep_answer if prompt.conversation is not None else None
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    top = (body.top_logprobs or 0) if body.logprobs else None
    jobs = []
    for choice in range(body.n):
        options = body.sampling_options(CHAT_MAX_TOKENS, choice)
        options = dataclasses.replace(options, stop=options.stop + turn_format.stops())
        jobs.append(Job(prompt, options, keep, logprobs=top))
    reply = Reply(chat=True, model=body.model, prompt_tokens=len(prompt.ids), top=top)
    return await respond(request, body, reply, jobs)


@router.post("/tokenize")
async def tokenize(request: Request) -> dict:
    """The token ids /v1/completions reads for this text: with add_special_tokens, the start-of-text
    token first (all that the model reads), else the text's own. Either list, sent back as a prompt,
    is read the same way. max_model_len is null: an LSTM reads any length."""
    body = await _body(request, TokenizeRequest)
    if body.model is not None:
        check_model(body.model, request)
    prompt = await text_prompt(_served(request).generator.tokenizer, body.prompt)
    ids = (prompt.read_ids if body.add_special_tokens else prompt.ids).tolist()
    return {"tokens": ids, "count": len(ids), "max_model_len": None}


@router.post("/detokenize")
async def detokenize(request: Request) -> dict:
    body = await _body(request, DetokenizeRequest)
    if body.model is not None:
        check_model(body.model, request)
    return {"prompt": await detokenized(_served(request).generator.tokenizer, body.tokens)}


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


def _served(request: Request) -> ServedModel:
    return server_state(request.app).model


async def _body(request: Request, schema: type[Schema]) -> Schema:
    return await read_body(request, schema, _served(request).settings.max_request_bytes)


def check_model(name: str, request: Request) -> None:
    """A 404 unless `name` is the served model's (every route that takes a model name, inspect_routes.py's too)."""
    served = _served(request).settings.model_name
    if name != served:
        message = f"the model {name!r} does not exist: this server has {served!r}"
        raise APIError(404, message, param="model", code="model_not_found")


def _model_card(request: Request) -> dict:
    return {"id": _served(request).settings.model_name, "object": "model", "created": 0, "owned_by": "textlstm"}
