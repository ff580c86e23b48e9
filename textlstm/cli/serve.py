"""`textlstm serve`: the OpenAI-compatible HTTP server (needs the `serve` extra)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading

import click

from textlstm.cli.generate import quantize_option
from textlstm.cli.options import dataclass_options, dataclass_values
from textlstm.config import DeviceSettings, ServeSettings
from textlstm.errors import TextlstmError

EXTRA_HINT = 'textlstm serve needs FastAPI and uvicorn: pip install "textlstm[serve]"'
ONEDNN_CACHE_ENTRIES = 64  # oneDNN primitives the server keeps (see serve)


def _network_options(command):
    """Who may use the server (AccessSettings)."""
    options = [
        click.option(
            "--api-key",
            metavar="KEY",
            envvar="TEXTLSTM_API_KEY",
            show_envvar=True,
            help="Require this key (Authorization: Bearer KEY) on every route but /, /health, /metrics and "
            "/metrics.json.",
        ),
        click.option(
            "--api-key-file",
            type=click.Path(dir_okay=False),
            metavar="PATH",
            help="Require one of the keys in this file, one a line (with --api-key: that one too).",
        ),
        click.option(
            "--cors-origin",
            "cors_origins",
            multiple=True,
            metavar="ORIGIN",
            help="Let pages on this origin (e.g. https://app.example) call the API from a browser; "
            "repeatable; * for any. Others get 403.",
        ),
        click.option(
            "--allowed-host",
            "allowed_hosts",
            multiple=True,
            metavar="NAME",
            help="A name this server answers to in the Host header beside its addresses (a DNS name "
            "it is reached by); repeatable. Others get 400.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False),
    default=None,
    help="Checkpoint folder to serve, or a model on the Hugging Face Hub: hf://USER/NAME[@REVISION]. "
    "Default: the newest folder under ./checkpoints.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option(
    "--model-name",
    default=None,
    help="The model's name in the API. Default: the checkpoint folder's name (USER/NAME for a model from the Hub).",
)
@click.option(
    "--user-prefix",
    help="Text before each user message in a chat (e.g. 'ROMEO: '). "
    "Default: the checkpoint's (its corpus card's [chat] table), else none.",
)
@click.option(
    "--bot-prefix",
    help="Text before each answer in a chat (e.g. 'JULIET: '). "
    "Default: the checkpoint's (its corpus card's [chat] table), else none.",
)
@dataclass_options(ServeSettings)
@dataclass_options(DeviceSettings)
@quantize_option
@_network_options
def serve(
    checkpoint,
    host,
    port,
    model_name,
    user_prefix,
    bot_prefix,
    device,
    precision,
    quantize,
    api_key,
    api_key_file,
    cors_origins,
    allowed_hosts,
    **settings,
) -> None:
    """Serve a model over HTTP with an OpenAI-compatible API and a chat page.

    Endpoints: /v1/completions, /v1/chat/completions (stream: true streams server-sent events),
    /v1/models, /tokenize, /detokenize, /tokenizer_info, /v1/inspect (a text's gates, states and
    found cells, as textlstm inspect records them), /health, /metrics (Prometheus; /metrics.json
    the same as JSON), and a page at /. It listens at once and loads the
    model in the background (/health: 503 until it serves). Every active sequence advances in one
    batched LSTM step per token. Ctrl-C or SIGTERM ends open answers and stops.
    """
    # oneDNN keeps the primitives it builds for each new batch size, about 2 MB each with bfloat16
    # weights (a step over batch sizes 1-1,000 held 1.29 GB, float32 352 MB): a server meets every
    # size, so its cache is bounded. Read once, when torch loads oneDNN: set before anything imports it.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_ENTRIES))
    try:
        from textlstm.serve.app import create_loading_app
        from textlstm.serve.security import is_loopback
        from textlstm.serve.server import RunningServer
        from textlstm.serve.state import server_state
    except ImportError as error:
        raise TextlstmError(f"{EXTRA_HINT} ({error})") from None
    from textlstm.cli.generate import warnings_as_lines
    from textlstm.generation.generator import load
    from textlstm.runs.hub import repo_id_of
    from textlstm.runs.inference import resolve_hardware

    _log_to_stderr()
    resolve_hardware(device, precision, quantize)  # what cannot run here: one error line before the server listens
    access = _access_settings(host, api_key, api_key_file, cors_origins, allowed_hosts)
    # Like `textlstm chat`: the checkpoint's prefixes, each replaced by the one given.
    given = {
        name: value for name, value in (("user_prefix", user_prefix), ("bot_prefix", bot_prefix)) if value is not None
    }

    def load_model():  # in the background, once the server listens
        with warnings_as_lines():
            generator = load(checkpoint, device=device, precision=precision, quantize=quantize)
        served = ServeSettings(
            model_name=model_name or repo_id_of(generator.checkpoint) or generator.checkpoint.resolve().name,
            turn_format=dataclasses.replace(generator.turns, **given),
            **dataclass_values(ServeSettings, settings),
        )
        return generator, served

    app = create_loading_app(load_model, access)
    server = RunningServer(app, host, port)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            server.force_stop()  # a second Ctrl-C: do not wait for connections
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    server.start()
    click.echo(f"listening on {server.url} while the model loads (/health answers 503 until it serves)", err=True)
    if not access.api_keys and not is_loopback(host):
        click.echo(
            f"warning: listening on {host} without an API key: anyone who can reach port {server.port} can use "
            "the model (--api-key, TEXTLSTM_API_KEY or --api-key-file to require one)",
            err=True,
        )
    state = server_state(app)
    _wait_while(lambda: not state.loaded.is_set(), stop, server)
    if state.load_error is not None:
        server.stop()
        raise state.load_error
    if state.engine is not None:
        name = state.model.settings.model_name
        click.echo(
            f"serving {name} on {server.url} (page: {server.url}/, API: {server.url}/v1); Ctrl-C stops", err=True
        )
        _wait_while(lambda: True, stop, server)
    click.echo("stopping", err=True)
    server.stop()
    click.echo(f"stopped; {state.engine.stats()['sequences'] if state.engine else 0} sequences active", err=True)


def _access_settings(
    host: str, api_key: str | None, api_key_file: str | None, cors_origins: tuple, allowed_hosts: tuple
):
    from textlstm.serve.security import AccessSettings, check_origin, read_api_keys

    keys = [api_key] if api_key else []
    if api_key_file:
        keys += read_api_keys(api_key_file)
    origins = tuple(check_origin(origin) for origin in cors_origins)
    return AccessSettings(api_keys=tuple(keys), cors_origins=origins, allowed_hosts=tuple(allowed_hosts), host=host)


def _wait_while(going_on, stop: threading.Event, server) -> None:
    """Until going_on() is false, a signal came, or the server stopped."""
    while going_on() and not stop.is_set() and server.running:
        stop.wait(0.2)


def _log_to_stderr() -> None:
    logger = logging.getLogger("textlstm.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
