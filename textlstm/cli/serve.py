"""`textlstm serve`: the OpenAI-compatible HTTP server (needs the `serve` extra)."""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path

import click

from textlstm.errors import TextlstmError

EXTRA_HINT = 'textlstm serve needs FastAPI and uvicorn: pip install "textlstm[serve]"'


@click.command()
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Checkpoint folder to serve. Default: the newest one under ./checkpoints.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on; 0 picks a free one.")
@click.option("--model-name", default=None, help="The model's name in the API. Default: the checkpoint folder's name.")
@click.option("--user-prefix", help="Text before each user message in a chat (e.g. 'ROMEO: '). "
              "Default: the checkpoint's (its corpus card's [chat] table), else none.")
@click.option("--bot-prefix", help="Text before each answer in a chat (e.g. 'JULIET: '). "
              "Default: the checkpoint's (its corpus card's [chat] table), else none.")
@click.option(
    "--max-conversations",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Conversation states kept for requests that send a conversation_id; the least recently used go first.",
)
@click.option(
    "--max-sequences",
    type=click.IntRange(min=1),
    default=4096,
    show_default=True,
    help="Sequences generated at once, all requests together; beyond this a request gets 429.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads for the model step.",
)
@click.option("--device", default="cpu", show_default=True, help="torch device to run on: cpu, cuda, cuda:N, mps.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "float32", "bfloat16"]),
    default="auto",
    show_default=True,
    help="bfloat16: hold the weights in bfloat16 (slightly different text; the speed-up measured is in "
    "benchmarks/SERVING.md). auto: bfloat16 where the CPU or GPU computes it natively, else float32.",
)
def serve(checkpoint, host, port, model_name, user_prefix, bot_prefix, max_conversations, max_sequences, threads, device, precision) -> None:
    """Serve a model over HTTP with an OpenAI-compatible API and a chat page.

    Endpoints: /v1/completions, /v1/chat/completions (stream: true streams server-sent events),
    /v1/models, /metrics, and a page at /. Every active sequence advances in one batched LSTM step
    per token. Ctrl-C or SIGTERM ends open answers and stops.
    """
    try:
        from textlstm.serve.app import ServeSettings, create_app
        from textlstm.serve.server import RunningServer
    except ImportError as error:
        raise TextlstmError(f"{EXTRA_HINT} ({error})") from None
    from textlstm.cli.generate import warnings_as_lines
    from textlstm.generation.generator import load

    _log_to_stderr()
    from textlstm.hardware.device import resolve_device
    from textlstm.hardware.precision import training_precision

    with warnings_as_lines():
        generator = load(checkpoint, device=device, precision=training_precision(precision, resolve_device(device)))
    # Like `textlstm chat`: the checkpoint's prefixes, each replaced by the one given.
    given = {name: value for name, value in (("user_prefix", user_prefix), ("bot_prefix", bot_prefix)) if value is not None}
    settings = ServeSettings(
        model_name=model_name or generator.checkpoint.resolve().name,
        turn_format=dataclasses.replace(generator.turns, **given),
        max_sequences=max_sequences,
        max_conversations=max_conversations,
        threads=threads,
    )
    app = create_app(generator, settings)
    server = RunningServer(app, host, port)
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            server.force_stop()  # a second Ctrl-C: do not wait for connections
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    server.start()
    click.echo(f"serving {settings.model_name} on {server.url} (page: {server.url}/, API: {server.url}/v1); Ctrl-C stops", err=True)
    while not stop.is_set() and server.running:
        stop.wait(0.5)
    click.echo("stopping", err=True)
    server.stop()
    click.echo(f"stopped; {app.state.engine.stats()['sequences']} sequences active", err=True)


def _log_to_stderr() -> None:
    logger = logging.getLogger("textlstm.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
