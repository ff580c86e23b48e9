"""A request's prompts as the engine reads them: a text tokenized, or token ids checked, with the
kept state of a chat's conversation found for its text.

A long prompt is tokenized (or its ids checked and decoded) in a worker thread: on the event loop it
would hold every other client meanwhile; a short one is not, where a thread hop costs more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from starlette.concurrency import run_in_threadpool

from textlstm.data.tokenizer import TextTokenizer
from textlstm.model.network import State
from textlstm.serve.conversations import ConversationStore, KeptState
from textlstm.serve.errors import APIError
from textlstm.serve.logprobs import prompt_text_and_offsets
from textlstm.tokens import EOT_ID

# Longer than these, a prompt takes a worker thread (each some milliseconds of work).
INLINE_PROMPT_CHARS = 20_000  # tokenized
INLINE_PROMPT_IDS = 5_000  # token ids checked and decoded


@dataclass
class Prompt:
    ids: torch.Tensor  # the whole prompt's tokens
    read_ids: torch.Tensor  # what the model reads: all of it after end of text, or what a kept state has not read
    state: State | None
    text: str = ""  # the prompt as text, when it is echoed
    offsets: list[int] | None = None  # where each token's text starts in `text`, when its tokens are echoed
    conversation: Conversation | None = None  # a chat's kept conversation; `state` is the one found for it

    def admit(self) -> None:
        """Once its request is admitted: the kept state of its conversation taken out of the store, or
        where another request took it meanwhile, the whole text read instead."""
        if self.conversation is not None and self.conversation.take() is None and self.state is not None:
            self.read_ids, self.state = _after_end_of_text(self.ids), None


@dataclass
class Conversation:
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


async def text_prompt(tokenizer: TextTokenizer, text: str, with_offsets: bool = False) -> Prompt:
    """A text's prompt; with_offsets: where each token starts in the text, for its echoed scores."""
    if len(text) <= INLINE_PROMPT_CHARS:
        return _text_prompt(tokenizer, text, with_offsets)
    return await run_in_threadpool(_text_prompt, tokenizer, text, with_offsets)


async def conversation_prompt(
    tokenizer: TextTokenizer, text: str, store: ConversationStore, client: int | None, conversation_id: str
) -> Prompt:
    """A chat's prompt that keeps its conversation's state: read from the state kept for it, if its
    text continues the text that state has read."""
    if len(text) <= INLINE_PROMPT_CHARS:
        return _conversation_prompt(tokenizer, text, store, client, conversation_id)
    return await run_in_threadpool(_conversation_prompt, tokenizer, text, store, client, conversation_id)


def _text_prompt(tokenizer: TextTokenizer, text: str, with_offsets: bool) -> Prompt:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "the text holds a lone surrogate (\\ud800-\\udfff): not valid Unicode") from None
    if not with_offsets:
        ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # not kept as a list: 36 bytes an id
        return Prompt(ids, _after_end_of_text(ids), None, text)
    encoding = tokenizer.hf.encode(text, add_special_tokens=False)
    ids, offsets = torch.tensor(encoding.ids, dtype=torch.long), [start for start, _ in encoding.offsets]
    return Prompt(ids, _after_end_of_text(ids), None, text, offsets)


def _conversation_prompt(
    tokenizer: TextTokenizer, text: str, store: ConversationStore, client: int | None, conversation_id: str
) -> Prompt:
    prompt = _text_prompt(tokenizer, text, False)
    found = store.find(client, conversation_id, text)
    prompt.conversation = Conversation(store, client, conversation_id, text, tokenizer.decode, found)
    if found is not None:
        prompt.read_ids = torch.tensor(tokenizer.encode(text[found.covered_chars :]), dtype=torch.long)
        prompt.state = found.state
    return prompt


async def completion_prompt(
    tokenizer: TextTokenizer, prompt: str | list[int], echo: bool, with_offsets: bool
) -> Prompt:
    """A completion's prompt, a text or token ids. Token ids are read after the start-of-text token
    like a text, unless they begin with it (EOT_ID): then they are read as they are."""
    if isinstance(prompt, str):
        return await text_prompt(tokenizer, prompt, with_offsets)
    if len(prompt) <= INLINE_PROMPT_IDS:
        return _token_id_prompt(tokenizer, prompt, echo, with_offsets)
    return await run_in_threadpool(_token_id_prompt, tokenizer, prompt, echo, with_offsets)


def _token_id_prompt(tokenizer: TextTokenizer, prompt: list[int], echo: bool, with_offsets: bool) -> Prompt:
    check_token_ids(tokenizer, prompt, "prompt")
    ids = torch.tensor(prompt, dtype=torch.long)
    read_ids = ids if prompt[0] == EOT_ID else _after_end_of_text(ids)
    text, offsets = prompt_text_and_offsets(tokenizer, prompt) if echo else ("", None)
    return Prompt(ids, read_ids, None, text, offsets if with_offsets else None)


async def detokenized(tokenizer: TextTokenizer, ids: list[int]) -> str:
    """The text of token ids (/detokenize)."""
    if len(ids) <= INLINE_PROMPT_IDS:
        return _detokenized(tokenizer, ids)
    return await run_in_threadpool(_detokenized, tokenizer, ids)


def _detokenized(tokenizer: TextTokenizer, ids: list[int]) -> str:
    check_token_ids(tokenizer, ids, "tokens")
    return tokenizer.decode(ids)


def check_token_ids(tokenizer: TextTokenizer, ids: list[int], param: str) -> None:
    vocab_size = tokenizer.vocab_size
    wrong = next((i for i in ids if not 0 <= i < vocab_size), None)
    if wrong is not None:
        message = f"{param}: token id {wrong} is not in the vocabulary (ids 0 to {vocab_size - 1})"
        raise APIError(400, message, param=param)


def _after_end_of_text(ids: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.tensor([EOT_ID]), ids])
