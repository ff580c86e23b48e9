"""The kept conversation states of the server (serve/conversations.py), without HTTP: found without
being taken, taken and put back, and bounded for each client and in all."""

from __future__ import annotations

import torch

from textlstm.serve.conversations import ConversationStore

STATE = (torch.zeros(1, 1, 4), torch.zeros(1, 1, 4))


def keep(store: ConversationStore, client: int, conversation_id: str) -> None:
    store.keep(client, conversation_id, STATE, f"{client} {conversation_id}")


def kept(store: ConversationStore) -> set[tuple[int, str]]:
    """The (client, id) pairs whose state the next turn of their text would find."""
    candidates = [(client, name) for client in (1, 2) for name in "abcdefg"]
    return {(client, name) for client, name in candidates if store.find(client, name, f"{client} {name} and on")}


def test_states_are_bounded_for_each_client_and_in_all_the_least_recently_used_first():
    store = ConversationStore(per_client=2, total=3)
    keep(store, 1, "a")
    keep(store, 2, "b")
    keep(store, 1, "c")
    keep(store, 2, "d")  # four in all: the oldest of any client goes, though client 1 is within its own bound
    assert kept(store) == {(2, "b"), (1, "c"), (2, "d")}
    keep(store, 1, "e")
    assert kept(store) == {(1, "c"), (2, "d"), (1, "e")}
    keep(store, 1, "f")  # three of client 1's: its own oldest goes, not client 2's older one
    assert kept(store) == {(2, "d"), (1, "e"), (1, "f")}
    assert len(store) == 3 and store.counters["evicted"] == 3


def test_a_state_is_taken_only_as_found_and_put_back_unless_an_answer_replaced_it():
    store = ConversationStore(per_client=10, total=10)
    keep(store, 1, "a")
    found = store.find(1, "a", "1 a and on")
    assert found is not None and store.find(1, "a", "something else") is None and len(store) == 1  # left kept
    assert store.take(1, "a", found) is found and len(store) == 0
    assert store.take(1, "a", found) is None  # taken once: another request reads the whole text
    store.put_back(1, "a", found)  # its request ended without an answer
    assert store.find(1, "a", "1 a and on") is found
    assert store.take(1, "a", found) is found
    store.keep(1, "a", STATE, "1 a, answered")  # meanwhile, another request's answer
    store.put_back(1, "a", found)
    assert store.find(1, "a", "1 a and on") is None and store.find(1, "a", "1 a, answered and on") is not None
    assert store.counters == {"reused": 2, "rebuilt": 1, "evicted": 0}
