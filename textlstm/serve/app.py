"""The ASGI app: the routes (routes.py) over an engine that starts and stops with the app's lifespan.

Before the routes, security.py checks who asks (Host, Origin, API key, content type). An app made
by `create_loading_app` listens before its model is loaded: every route but /health answers 503
until then. The app's state is one `ServerState` (state.py). A new group of routes goes in a module
of its own with its own APIRouter, included in `_new_app`.

Errors are JSON in OpenAI's format, {"error": {"message", "type", "param", "code"}}; an error the
routes did not expect is a 500 that names only its type (and is logged).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from textlstm.config import ServeSettings  # also imported from here
from textlstm.generation.generator import TextGenerator
from textlstm.serve import inspect_routes, routes
from textlstm.serve.engine import Engine
from textlstm.serve.errors import APIError, error_body
from textlstm.serve.security import AccessSettings, install
from textlstm.serve.state import ServedModel, ServerState, server_state

__all__ = ["ServeSettings", "create_app", "create_loading_app"]

log = logging.getLogger("textlstm.serve")


def create_app(generator: TextGenerator, settings: ServeSettings, access: AccessSettings | None = None) -> FastAPI:
    """The ASGI app serving `generator`; its engine thread starts and stops with the app's lifespan."""
    return _new_app(ServerState(access or AccessSettings(), served=ServedModel.of(generator, settings)))


def create_loading_app(
    load: Callable[[], tuple[TextGenerator, ServeSettings]], access: AccessSettings | None = None
) -> FastAPI:
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
    app.include_router(routes.router)
    app.include_router(inspect_routes.router)
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


def _serve_loaded(
    state: ServerState, generator: TextGenerator, settings: ServeSettings, loop: asyncio.AbstractEventLoop
) -> None:
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
        body = error_body(message, "server_error", None, "model_not_loaded")
        await JSONResponse(body, status_code=503)(scope, receive, send)


async def _api_error(request: Request, error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error.message, error.type, error.param, error.code), status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
    message = f"{error.detail}: {request.method} {request.url.path}"
    return JSONResponse(error_body(message, kind), status_code=error.status_code)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return JSONResponse(error_body(f"internal error: {type(error).__name__}", "server_error"), status_code=500)
