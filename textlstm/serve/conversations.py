"""Chat messages as text, and the LSTM states of conversations kept between turns.

Messages become text with `TurnFormat`, the format `textlstm chat` uses: a user message is a user
turn (its prefix, the text, a newline, then the bot prefix the answer follows), an assistant message
is its text and a newline. A system (or developer) message is its text and a newline, with no prefix,
read where it stands: an LSTM language model has no separate instruction channel, so a system
message is simply the opening text of the conversation.

A kept conversation is its (h, c) after the last answer and a digest of the text that state has
read. When the next request's conversation text starts with that text, only the rest is read; if
it does not (the client edited the history), or the state was evicted (the least recently used go
first when the store is full), the whole conversation is read again from its messages.

A request finds the state for its text when its prompt is read, takes it out of the store only
once it is admitted (the request in flight owns it then), and puts it back if it ends without an
answer (refused by the engine, failed, stopped, or its client left): only an answer replaces it.

Conversations belong to a client: the number of the API key a request came with (None when the
server asks for none). A client's ids are its own; it finds and replaces only its own conversations,
and a request whose text does not continue a kept state leaves that state where it is (the answer it
gets then replaces it). The store keeps up to a number of states for each client and up to a number
in all: past a client's own bound its least recently used state goes, past the total the least
recently used of any client.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from textlstm.model.network import State
from textlstm.turns import TurnFormat


def conversation_text(messages: list[tuple[str, str]], turn_format: TurnFormat) -> str:
    """The text the model reads for (role, text) messages; the last one is the user's."""
    parts = []
    for role, text in messages:
        if role in ("system", "developer"):
            parts.append(f"{text}\n")
        else:
            parts.append(turn_format.conversation([(role, text)]))
    return "".join(parts)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True)
class KeptState:
    state: State
    covered_chars: int  # the state has read exactly the first covered_chars characters of the text
    digest: bytes


class ConversationStore:
    """Up to `per_client` conversation states for each client, by id, and up to `total` in all, the
    least recently used evicted first. Thread-safe."""

    def __init__(self, per_client: int, total: int):
        self.per_client, self.total = per_client, total
        self._kept: dict[int | None, OrderedDict[str, KeptState]] = {}  # each client's, least recently used first
        self._order: OrderedDict[tuple[int | None, str], None] = OrderedDict()  # every client's, the same way
        self._lock = threading.Lock()
        self.counters = {"reused": 0, "rebuilt": 0, "evicted": 0}

    def find(self, client: int | None, conversation_id: str, text: str) -> KeptState | None:
        """The state kept for the conversation, if `text` continues the text it has read (and is longer);
        it stays kept. None otherwise."""
        with self._lock:
            kept = self._kept.get(client, {}).get(conversation_id)
        if kept is not None and len(text) > kept.covered_chars and _digest(text[: kept.covered_chars]) == kept.digest:
            return kept
        return None

    def take(self, client: int | None, conversation_id: str, found: KeptState | None) -> KeptState | None:
        """`found` taken out, if it is still what is kept for the conversation: the request now admitted
        owns it. None when there is nothing to take (the conversation is read again from its text)."""
        with self._lock:
            if found is not None and self._kept.get(client, {}).get(conversation_id) is found:
                self._remove(client, conversation_id)
                self.counters["reused"] += 1
                return found
            self.counters["rebuilt"] += 1
            return None

    def put_back(self, client: int | None, conversation_id: str, taken: KeptState) -> None:
        """A state taken by a request that ended without an answer, unless another answer has been kept
        for the conversation meanwhile."""
        with self._lock:
            if conversation_id not in self._kept.get(client, {}):
                self._add(client, conversation_id, taken)

    def keep(self, client: int | None, conversation_id: str, state: State, covered_text: str) -> None:
        kept = KeptState(state, len(covered_text), _digest(covered_text))
        with self._lock:
            self._add(client, conversation_id, kept)

    def _add(self, client: int | None, conversation_id: str, kept: KeptState) -> None:
        own = self._kept.setdefault(client, OrderedDict())
        own[conversation_id] = kept
        own.move_to_end(conversation_id)
        self._order[(client, conversation_id)] = None
        self._order.move_to_end((client, conversation_id))
        while len(own) > self.per_client:
            self._evict(client, next(iter(own)))
        while len(self._order) > self.total:
            self._evict(*next(iter(self._order)))

    def _evict(self, client: int | None, conversation_id: str) -> None:
        self._remove(client, conversation_id)
        self.counters["evicted"] += 1

    def _remove(self, client: int | None, conversation_id: str) -> None:
        own = self._kept[client]
        del own[conversation_id]
        if not own:
            del self._kept[client]
        del self._order[(client, conversation_id)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._order)
