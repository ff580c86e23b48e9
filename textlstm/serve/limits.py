"""What one request may ask for, and how many sequences one API key may have at once.

The caps leave room for lm-evaluation-harness's batches (many prompts a request, each scored with
echo and max_tokens 0, or continued for a few hundred tokens) and refuse a request whose work alone
would hold the server for hours. Each refusal is a 4xx in OpenAI's error format.
"""

from __future__ import annotations

from textlstm.serve.errors import APIError


def check_request_size(generated_tokens: int, prompt_tokens: int, max_generated: int, max_prompt: int) -> None:
    """generated_tokens: what the request may generate (prompts x n x max_tokens); prompt_tokens: what the
    engine reads for it (each prompt once for each of its choices)."""
    if generated_tokens > max_generated:
        message = (
            f"the request may generate {generated_tokens} tokens (prompts x n x max_tokens), "
            f"over this server's limit of {max_generated} a request (--max-request-tokens)"
        )
        raise APIError(400, message, param="max_tokens", code="request_too_large")
    if prompt_tokens > max_prompt:
        message = (
            f"the request's prompts are {prompt_tokens} tokens to read (each prompt once for each choice), "
            f"over this server's limit of {max_prompt} a request (--max-prompt-tokens)"
        )
        raise APIError(400, message, param="prompt", code="request_too_large")


class KeyQuota:
    """Sequences active for each API key (a client: its number), at most `limit` each; None, the
    client of a server without keys, has no quota of its own. Used on the event loop only."""

    def __init__(self, limit: int):
        self.limit = limit
        self._active: dict[int, int] = {}

    def take(self, client: int | None, count: int) -> None:
        if client is None:
            return
        active = self._active.get(client, 0)
        if active + count > self.limit:
            message = (
                f"this API key has {active} sequences active and the request asks for {count} more: "
                f"the limit is {self.limit} a key (--max-sequences-per-key); try again when some end"
            )
            raise APIError(429, message, type="rate_limit_error", code="too_many_sequences")
        self._active[client] = active + count

    def give_back(self, client: int | None, count: int) -> None:
        if client is None:
            return
        left = self._active.get(client, 0) - count
        if left > 0:
            self._active[client] = left
        else:
            self._active.pop(client, None)

    def active(self, client: int | None) -> int:
        return self._active.get(client, 0) if client is not None else 0
