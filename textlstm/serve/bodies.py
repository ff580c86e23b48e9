"""A request's JSON body as its schema (schemas.py): read up to the size limit, parsed and checked.

A bad body is a 400 that names what is wrong, a body over the limit a 413. A big body is parsed in a
worker thread: 3 MB of token ids took 0.3 s, which on the event loop would hold every other client.
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from textlstm.serve.errors import APIError
from textlstm.serve.schemas import describe

INLINE_BODY_BYTES = 64 * 2**10  # bigger bodies are parsed in a worker thread; smaller, a thread hop costs more

Schema = TypeVar("Schema", bound=BaseModel)


async def read_body(request: Request, schema: type[Schema], limit: int) -> Schema:
    """The request body as `schema`, read up to `limit` bytes."""
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
        return _parsed(data, schema)
    return await run_in_threadpool(_parsed, data, schema)


def _parsed(data: bytearray, schema: type[Schema]) -> Schema:
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
