"""What one app's routes read, in one typed object: `server_state(app)` (kept as app.state.server).

A `ServerState` exists from the app's creation; the model it serves (`ServedModel`: the generator,
the settings, the kept conversations, the keys' quotas) comes with create_app, or once
create_loading_app's load has returned; the engine starts last, and from then on the app serves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from textlstm.config import ServeSettings
from textlstm.generation.generator import TextGenerator
from textlstm.serve.conversations import ConversationStore
from textlstm.serve.engine import Engine
from textlstm.serve.limits import KeyQuota
from textlstm.serve.logprobs import TokenNames
from textlstm.serve.metrics import new_registry
from textlstm.serve.security import AccessSettings


@dataclass(frozen=True)
class ServedModel:
    """The model served and what its requests need beside the engine."""

    generator: TextGenerator
    settings: ServeSettings  # with the turn format chats are read in
    token_names: TokenNames
    conversations: ConversationStore
    quota: KeyQuota

    @classmethod
    def of(cls, generator: TextGenerator, settings: ServeSettings) -> ServedModel:
        """Serving `generator` with `settings`; chats in the checkpoint's turn format unless they give one."""
        if settings.turn_format is None:
            settings = dataclasses.replace(settings, turn_format=generator.turns)
        conversations = ConversationStore(settings.max_conversations, settings.max_conversations_total)
        quota = KeyQuota(settings.max_sequences_per_key)
        return cls(generator, settings, TokenNames(generator.tokenizer), conversations, quota)


@dataclass
class ServerState:
    access: AccessSettings
    # create_loading_app's: what the app serves, loaded in a thread of its own once it listens.
    load: Callable[[], tuple[TextGenerator, ServeSettings]] | None = None
    loaded: threading.Event = field(default_factory=threading.Event)  # set once load returned or failed
    load_error: Exception | None = None  # what load raised
    stopping: bool = False  # the app's lifespan has ended: a model loaded now is not served
    served: ServedModel | None = None
    engine: Engine | None = None  # set last: from then on the app serves
    inspecting: asyncio.Lock = field(default_factory=asyncio.Lock)  # one /v1/inspect at a time (inspect_routes.py)
    registry: CollectorRegistry = field(init=False)  # /metrics

    def __post_init__(self):
        self.registry = new_registry(self.figures)

    @property
    def model(self) -> ServedModel:
        """What the routes serve; they run only once the engine does (until then they answer 503)."""
        if self.served is None:
            raise RuntimeError("no model is served yet")
        return self.served

    def figures(self) -> dict:
        """The figures of /metrics and /metrics.json."""
        conversations = self.model.conversations
        return {
            "model": self.model.settings.model_name,
            **(self.engine.stats() if self.engine else {}),
            "kept_conversations": len(conversations),
            **{f"conversations_{name}": count for name, count in conversations.counters.items()},
        }


def server_state(app) -> ServerState:
    """The state of an app made by create_app or create_loading_app."""
    return app.state.server
