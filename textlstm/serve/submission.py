"""A request's choices in the engine: each a `Job`, all of them one `Submission`, whose events
arrive on an asyncio queue for the reply (replies.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from textlstm.config import SamplingOptions
from textlstm.model.network import State
from textlstm.serve.engine import Engine, EngineBusy, EngineStopped, Event, Failed, Finished, GenerationRequest
from textlstm.serve.errors import APIError
from textlstm.serve.limits import KeyQuota
from textlstm.serve.prompts import Prompt


@dataclass
class Job:
    """One choice to run: its prompt, its settings, and what it reports besides text."""

    prompt: Prompt
    options: SamplingOptions
    keep: Callable[[State, list[int]], None] | None = None  # on_final_state, for a kept conversation
    logprobs: int | None = None  # TokenScores of each token picked, with this many most likely
    prompt_logprobs: int | None = None  # and of the prompt's tokens
    generate: bool = True


@dataclass(frozen=True)
class TimedOut(Failed):
    """The request ran past ServeSettings.request_timeout: its sequences were stopped."""


class Submission:
    """The choices of one request in the engine; their events arrive on an asyncio queue, as
    (choice, event), and a TimedOut as (None, event).

    They count against the client's quota until the submission ends (`cancel`) or its time is up: at
    `timeout` seconds it stops its sequences itself and sends TimedOut, so a response that never ran
    (its client left before it started) holds nothing for longer. Admitted, the request takes its kept
    conversation's state (`Prompt.admit`); ended without an answer, it puts it back.
    """

    def __init__(
        self,
        engine: Engine,
        jobs: list[Job],
        client: int | None = None,
        quota: KeyQuota | None = None,
        timeout: float | None = None,
    ):
        self.queue: asyncio.Queue[tuple[int | None, Event]] = asyncio.Queue()
        self.size = len(jobs)
        self.open = len(jobs)
        self.handles = []
        self.client, self.quota, self.held = client, quota, 0
        self.deadline = None
        self.prompts = list({id(job.prompt): job.prompt for job in jobs}.values())
        if quota is not None:
            quota.take(client, len(jobs))
            self.held = len(jobs)
        for prompt in self.prompts:
            prompt.admit()
        try:
            for index, job in enumerate(jobs):
                self.handles.append(engine.submit(self._request(index, job)))
        except EngineBusy:
            self.cancel()
            message = "the server is at its limit of active sequences: try again shortly"
            raise APIError(429, message, type="rate_limit_error") from None
        except EngineStopped:
            self.cancel()
            raise APIError(503, "the server is shutting down", type="server_error") from None
        if timeout:
            self.deadline = asyncio.get_running_loop().call_later(timeout, self._time_out, timeout)

    def _request(self, index: int, job: Job) -> GenerationRequest:
        prompt = job.prompt
        return GenerationRequest(
            prompt.read_ids,
            job.options,
            lambda event: self.queue.put_nowait((index, event)),
            prompt.state,
            seen_ids=prompt.ids,
            decode_context=prompt.ids,
            on_final_state=job.keep,
            logprobs=job.logprobs,
            prompt_logprobs=job.prompt_logprobs,
            generate=job.generate,
        )

    def _time_out(self, timeout: float) -> None:
        self.cancel()
        message = (
            f"the request ran past this server's limit of {timeout:g} seconds (--request-timeout): "
            "its sequences were stopped"
        )
        self.queue.put_nowait((None, TimedOut(message)))

    async def next_events(self) -> list[tuple[int | None, Event]]:
        """The events that have arrived, at least one."""
        events = [await self.queue.get()]
        while not self.queue.empty():
            events.append(self.queue.get_nowait())
        self.open -= sum(isinstance(event, (Finished, Failed)) for _, event in events)
        return events

    def cancel(self) -> None:
        """Stop every sequence still running (none when all ended), give back the quota and a kept
        conversation's state that no answer replaced."""
        for handle in self.handles:
            handle.cancel()
        for prompt in self.prompts:
            if prompt.conversation is not None:
                prompt.conversation.end()
        if self.deadline is not None:
            self.deadline.cancel()
        if self.held:
            self.quota.give_back(self.client, self.held)
            self.held = 0
