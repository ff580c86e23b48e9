"""The continuous-batching loop: one thread owns the model and advances every active sequence.

Each turn of the loop
  1. admits the requests that arrived since the last turn and drops those whose client left;
  2. reads the next chunk of every unread prompt, side by side (rows of different lengths in passes
     from the shortest to the longest), so a long prompt is read a chunk per turn while the others
     keep generating;
  3. picks one token for every generating sequence, each with its own settings and random stream,
     and reads all those tokens with one batched `model.step`;
  4. hands the text produced this turn to `deliver` in one call (the server posts it to its event
     loop), and retires the sequences that finished.

One sequence's failure ends that sequence alone: when reading or generating raises (a request's
settings that the sampler cannot take, memory for one long prompt), the same work is done again on
each half of its rows, and so on down to the sequence that fails on its own, which ends with
`Failed`; the others go on. Each part is computed first and applied only once it has succeeded, so
a row that is tried again reads and generates exactly what it would have, but for its random
draws: a sampled row draws again.

A request can also ask for log-probabilities (`TokenScores`): of each token it picks, and of each
token of its prompt, from the logits of every prompt position, computed only for the requests that
ask; a request that does not generate (`generate=False`) only reads and scores its prompt.

A sequence's whole context is its (h, c): the batch is a pair of [layers, batch, hidden] tensors,
rows join and leave between steps.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from textlstm.config import SamplingOptions
from textlstm.data.tokenizer import TextTokenizer
from textlstm.generation.decoding import DECODE_CONTEXT, StopStringFilter, TextDecoder
from textlstm.generation.sampler import (
    RowSettings,
    TokenLogprobs,
    filtered_scores,
    make_rng,
    pick_tokens,
    token_logprobs,
)
from textlstm.model.network import LSTMLanguageModel, State
from textlstm.tokens import EOT_ID

log = logging.getLogger("textlstm.serve")

PROMPT_STEP_SECONDS = 0.04  # prompt reading per step while others generate: what their next token waits
MIN_PROMPT_CHUNK = 16
SCORED_POSITIONS = 256  # prompt positions whose logits are held at once when a prompt is scored

Result = TypeVar("Result")


# --- what goes in and what comes out ---------------------------------------------------------------


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class Finished:
    reason: str  # "stop" (end of text or a stop string) or "length" (max_tokens)
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """The sequence ended before it finished, in an error of the engine's: `message` says which."""

    message: str


@dataclass(frozen=True)
class ShutDown(Failed):
    """The engine is shutting down: every sequence still running ends with this."""


@dataclass(frozen=True)
class TokenScores:
    """Log-probabilities (`sampler.token_logprobs`) of tokens, in order: with prompt=True those of
    read_ids[1:], each read from the ids before it, sent once the prompt is read; else the token
    just picked, sent before its text. top_ids / top_logprobs: the most likely tokens at each."""

    prompt: bool
    ids: list[int]
    logprobs: list[float]
    top_ids: list[list[int]]
    top_logprobs: list[list[float]]


Event = TextPiece | Finished | Failed | TokenScores


@dataclass
class GenerationRequest:
    """One sequence to generate. `on_event` is called with each Event by `deliver`'s caller."""

    # Ids to read before the first token; a new text starts with EOT_ID. Token ids may come as a
    # 1-D tensor: 8 bytes an id, where a list of a long prompt's ids costs up to 36.
    read_ids: Sequence[int] | torch.Tensor
    options: SamplingOptions
    on_event: Callable[[Event], None]
    state: State | None = None  # where reading starts ([layers, 1, hidden] each); None: zeros
    seen_ids: Sequence[int] | torch.Tensor = ()  # tokens the repetition penalty counts as already in the text
    decode_context: Sequence[int] = ()
    # Called with the final state and the generated ids it has read (all but the last one picked),
    # when the sequence ends normally: how a conversation keeps its state for the next turn.
    on_final_state: Callable[[State, list[int]], None] | None = None
    # TokenScores with this many most likely tokens at each position; None: none sent.
    logprobs: int | None = None  # of each token picked
    prompt_logprobs: int | None = None  # of read_ids[1:]
    generate: bool = True  # False: read (and score) the prompt, then finish without picking a token


class EngineBusy(Exception):
    """As many sequences as the engine takes are already active or waiting."""


class EngineStopped(Exception):
    """The engine is shutting down and takes no new requests."""


class Handle:
    """The caller's side of a submitted sequence."""

    def __init__(self, sequence: _Sequence):
        self._sequence = sequence

    def cancel(self) -> None:
        """Stop it (its client left): the engine drops it before its next step, delivering nothing more."""
        self._sequence.cancelled = True


# --- the engine --------------------------------------------------------------------------------------


class Engine:
    def __init__(
        self,
        model: LSTMLanguageModel,
        tokenizer: TextTokenizer,
        deliver: Callable[[list[tuple[Callable[[Event], None], Event]]], None],
        max_sequences: int = 4096,
        prompt_chunk: int | None = None,
        idle_prompt_chunk: int = 1024,
        threads: int = 1,
    ):
        """deliver(pairs) is called from the engine thread once per step with (on_event, event) pairs.

        prompt_chunk: prompt tokens read per step while other sequences are generating (each step of
        theirs waits for it); None: as many as take about PROMPT_STEP_SECONDS at the reading speed
        measured so far. idle_prompt_chunk: the most read per step when nothing is generating.
        """
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.deliver = deliver
        self.max_sequences = max_sequences
        self.prompt_chunk = prompt_chunk
        self.idle_prompt_chunk = idle_prompt_chunk
        self.threads = threads
        self.device = model.embedding.weight.device
        self._prompt_speed = None  # prompt tokens per second along the time axis, measured
        self._incoming: queue.SimpleQueue[_Sequence | None] = queue.SimpleQueue()
        self._reading: list[_Sequence] = []
        self._batch = _Batch(self.device)
        self._outbox: list[tuple[Callable[[Event], None], Event]] = []
        self._lock = threading.Lock()
        self._live = 0  # submitted and not yet retired
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.counters = {
            "steps": 0,
            "tokens_generated": 0,
            "prompt_tokens_read": 0,
            "finished": 0,
            "cancelled": 0,
            "failed": 0,
        }

    # -- the caller's side (any thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="textlstm-engine", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Handle:
        if len(request.read_ids) == 0:
            raise ValueError("a request must read at least one id (a new text starts with the end-of-text id)")
        with self._lock:
            if self._stopping:
                raise EngineStopped()
            if self._live >= self.max_sequences:
                raise EngineBusy()
            self._live += 1
        sequence = _Sequence(request, self.tokenizer)
        self._incoming.put(sequence)
        return Handle(sequence)

    def shutdown(self, timeout: float = 10.0) -> None:
        """End every sequence with ShutDown("server is shutting down") and stop the thread."""
        with self._lock:
            self._stopping = True
        self._incoming.put(None)  # wakes the loop if it waits for work
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def stats(self) -> dict:
        with self._lock:
            live = self._live
        return {
            "sequences": live,
            "generating": len(self._batch.sequences),
            "reading_prompt": len(self._reading),
            **self.counters,
        }

    # -- the loop (engine thread)

    def _run(self) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                self._admit(wait=not (self._reading or self._batch.sequences))
                if self._stopping:
                    self._end_everything(ShutDown("server is shutting down"))
                    return
                self._drop_cancelled()
                try:  # each sequence's own failure ends it alone (_isolated); this is for the engine's own bugs
                    self._read_prompts()
                    self._generate_step()
                except Exception as error:
                    log.exception("engine step failed")
                    self._end_everything(Failed(f"internal error: {type(error).__name__}: {error}"))
                self._flush()

    def _admit(self, wait: bool) -> None:
        if wait:
            item = self._incoming.get()
            if item is not None:
                self._reading.append(item)
        self._reading.extend(self._take_incoming())

    def _take_incoming(self) -> list:
        """Every sequence waiting in the queue now (None entries only wake the loop)."""
        taken = []
        while True:
            try:
                item = self._incoming.get_nowait()
            except queue.Empty:
                return taken
            if item is not None:
                taken.append(item)

    def _drop_cancelled(self) -> None:
        for sequence in [s for s in self._reading if s.cancelled]:
            self._reading.remove(sequence)
            self._retire(sequence, "cancelled")
        sequences = self._batch.sequences
        if any(s.cancelled for s in sequences):
            for sequence in sequences:
                if sequence.cancelled:
                    self._retire(sequence, "cancelled")
            self._batch.keep([i for i, s in enumerate(sequences) if not s.cancelled])

    def _read_prompts(self) -> None:
        """The next chunk of every unread prompt, side by side; finished prompts join the batch."""
        if not self._reading:
            return
        chunk = self._prompt_chunk()
        reading = self._reading
        joining = []
        for rows, read in self._isolated(reading, lambda rows: self._read_chunk(reading[rows], chunk)):
            joining.append(self._advance(reading[rows], read))
        self._reading = [s for s in reading if not s.failed and s.position < len(s.read_ids)]
        self._join([part for part in joining if part.sequences])

    def _read_chunk(self, rows: list[_Sequence], chunk: int) -> _ReadChunk:
        """The next `chunk` ids of each row read, and what follows from them; nothing is changed yet."""
        lengths = [min(chunk, len(s.read_ids) - s.position) for s in rows]
        states = [s.state or self.model.initial_state(1) for s in rows]
        h = torch.cat([state[0] for state in states], dim=1)
        c = torch.cat([state[1] for state in states], dim=1)
        started = time.perf_counter()
        hidden, (h, c) = self._read_side_by_side(rows, lengths, (h, c))
        self._measure_prompt_speed(max(lengths), time.perf_counter() - started)
        ends = [s.position + n == len(s.read_ids) for s, n in zip(rows, lengths)]
        scores, prompt_scores = [], []
        for i, (sequence, length) in enumerate(zip(rows, lengths)):
            scored = sequence.request.prompt_logprobs is not None
            scores.append(sequence.score_prompt_chunk(self.model, hidden[i, :length]) if scored else [])
            prompt_scores.append(sequence.prompt_scores_event(scores[-1]) if scored and ends[i] else None)
        joining = [i for i, (s, end) in enumerate(zip(rows, ends)) if end and s.request.generate]
        logits = None
        if joining:
            last = torch.tensor([lengths[i] - 1 for i in joining], device=self.device)
            logits = self.model.logits(hidden[torch.tensor(joining, device=self.device), last])
        return _ReadChunk(lengths, h, c, scores, prompt_scores, joining, logits)

    def _advance(self, rows: list[_Sequence], read: _ReadChunk) -> _Joining:
        """Apply a chunk read to its rows; the rows whose prompts are read and that generate, to join the batch."""
        self.counters["prompt_tokens_read"] += sum(read.lengths)
        for i, (sequence, length) in enumerate(zip(rows, read.lengths)):
            sequence.position += length
            sequence.state = (read.h[:, i : i + 1], read.c[:, i : i + 1])
            sequence.prompt_scores += read.scores[i]
            if sequence.position < len(sequence.read_ids):
                continue
            sequence.prompt_scores = []
            if read.prompt_scores[i] is not None:
                self._outbox.append((sequence.request.on_event, read.prompt_scores[i]))
            if not sequence.request.generate:
                self._outbox.append((sequence.request.on_event, Finished("length", 0)))
                self._retire(sequence, "finished")
        joining = read.joining
        return _Joining([rows[i] for i in joining], read.h[:, joining], read.c[:, joining], read.logits)

    def _join(self, parts: list[_Joining]) -> None:
        if not parts:
            return
        sequences = [sequence for part in parts for sequence in part.sequences]
        try:
            if len(parts) == 1:
                h, c, logits = parts[0].h, parts[0].c, parts[0].logits
            else:
                h = torch.cat([part.h for part in parts], dim=1)
                c = torch.cat([part.c for part in parts], dim=1)
                logits = torch.cat([part.logits for part in parts])
            self._batch.join(sequences, h, c, logits, self.model.config.vocab_size)
        except Exception as error:  # out of memory for the bigger batch: these fail, the batch goes on
            for sequence in sequences:
                self._fail(sequence, error)

    def _read_side_by_side(self, rows: list[_Sequence], lengths: list[int], state: State) -> tuple[torch.Tensor, State]:
        """The next lengths[i] ids of each row from `state` ([layers, rows, hidden] each): the hidden
        states [rows, max(lengths), hidden] (zero past a row's length) and the state after each row's ids.

        In passes from the shortest piece to the longest, each over the rows still reading, so every
        pass is a dense block: rows of different lengths in one pass would take the packed LSTM
        kernel, half as fast (measured, 8 rows of 256 ids with one of 100, bfloat16 and float32).
        """
        h, c = state
        hidden = None
        done = 0
        for end in sorted(set(lengths)):
            active = [i for i, length in enumerate(lengths) if length >= end]
            ids = torch.stack([rows[i].read_ids[rows[i].position + done : rows[i].position + end] for i in active]).to(
                self.device
            )
            if len(active) == len(rows):
                part, (h, c) = self.model.hidden_states(ids, (h, c))
            else:
                index = torch.tensor(active, device=self.device)
                part, (h_part, c_part) = self.model.hidden_states(ids, (h[:, index], c[:, index]))
                h, c = h.index_copy(1, index, h_part), c.index_copy(1, index, c_part)
            if hidden is None:
                hidden = part.new_zeros(len(rows), max(lengths), part.shape[-1])
            hidden[active, done:end] = part
            done = end
        return hidden, (h, c)

    def _prompt_chunk(self) -> int:
        if not self._batch.sequences:
            return self.idle_prompt_chunk
        if self.prompt_chunk is not None:
            return self.prompt_chunk
        if self._prompt_speed is None:
            return MIN_PROMPT_CHUNK
        return max(MIN_PROMPT_CHUNK, min(self.idle_prompt_chunk, int(self._prompt_speed * PROMPT_STEP_SECONDS)))

    def _measure_prompt_speed(self, steps: int, seconds: float) -> None:
        """Time steps read per second (rows of a batch run side by side), smoothed over recent reads."""
        if steps < MIN_PROMPT_CHUNK or seconds <= 0:
            return
        speed = steps / seconds
        self._prompt_speed = speed if self._prompt_speed is None else 0.7 * self._prompt_speed + 0.3 * speed

    def _generate_step(self) -> None:
        """One token for every generating sequence, then one model step for those that go on."""
        batch = self._batch
        if not batch.sequences:
            return
        steps = self._isolated(batch.sequences, self._next_tokens)
        rows = [row for part, _ in steps for row in range(part.start, part.stop)]
        if len(rows) < len(batch.sequences):  # some failed: the others' rows, with what each part computed
            batch.keep(rows)
            if not rows:
                return
        step = steps[0][1] if len(steps) == 1 else _TokenStep.cat([step for _, step in steps])
        self._outbox += step.token_scores  # each before the text of its token
        going_on = []
        for i, (sequence, token) in enumerate(zip(batch.sequences, step.tokens.tolist())):
            try:
                goes_on = sequence.take(token, self._outbox)
            except Exception as error:  # in decoding its text
                self._fail(sequence, error)
                continue
            if goes_on:
                going_on.append(i)
            else:
                self._keep_final_state(sequence, batch.h[:, i : i + 1], batch.c[:, i : i + 1])
                self._retire(sequence, "finished")
        self.counters["tokens_generated"] += len(batch.sequences)
        self.counters["steps"] += 1
        batch.seen[torch.arange(len(batch.sequences), device=self.device), step.tokens] = True
        batch.logits, batch.h, batch.c = step.logits, step.h, step.c
        if len(going_on) < len(batch.sequences):
            batch.keep(going_on)

    def _next_tokens(self, rows: slice) -> _TokenStep:
        """For the batch's `rows`: a token each, its log-probabilities for those that ask, and the model
        step that reads it (for every row: a row that has just ended reads its last token in vain)."""
        batch = self._batch
        scores = filtered_scores(batch.logits[rows], batch.settings.select(rows), batch.seen[rows])
        sequences = batch.sequences[rows]
        tokens = pick_tokens(scores, batch.settings.greedy[rows], [s.rng for s in sequences])
        token_scores = self._token_scores(sequences, batch.logits[rows], tokens) if batch.scoring else []
        logits, (h, c) = self.model.step(tokens, (batch.h[:, rows], batch.c[:, rows]))
        return _TokenStep(tokens, token_scores, logits, h, c)

    def _token_scores(
        self, sequences: list[_Sequence], logits: torch.Tensor, tokens: torch.Tensor
    ) -> list[tuple[Callable, TokenScores]]:
        """TokenScores of the token each sequence that asked for them has just picked, from its raw logits."""
        asking = [i for i, s in enumerate(sequences) if s.request.logprobs is not None]
        if not asking:
            return []
        top = max(sequences[i].request.logprobs for i in asking)
        index = torch.tensor(asking, device=self.device)
        figures = token_logprobs(logits[index], tokens[index], top)
        chosen, top_ids, top_logprobs = figures.chosen.tolist(), figures.top_ids.tolist(), figures.top_logprobs.tolist()
        events = []
        for j, i in enumerate(asking):
            request, k = sequences[i].request, sequences[i].request.logprobs
            scores = TokenScores(False, [int(tokens[i])], [chosen[j]], [top_ids[j][:k]], [top_logprobs[j][:k]])
            events.append((request.on_event, scores))
        return events

    def _isolated(
        self, sequences: list[_Sequence], compute: Callable[[slice], Result], rows: slice | None = None
    ) -> list[tuple[slice, Result]]:
        """compute(rows) for all the rows of `sequences` at once; if it raises, for each half of the rows
        apart, and so on down to the sequence that fails alone: it ends with Failed, the others go on.
        What succeeded, in row order: (rows, compute(rows))."""
        if rows is None:
            rows = slice(0, len(sequences))
        try:
            return [(rows, compute(rows))]
        except Exception as error:
            if rows.stop - rows.start == 1:
                self._fail(sequences[rows.start], error)
                return []
            log.warning(
                "a step over %d sequences failed (%s: %s): trying each half apart",
                rows.stop - rows.start,
                type(error).__name__,
                error,
            )
        middle = (rows.start + rows.stop) // 2
        first, second = slice(rows.start, middle), slice(middle, rows.stop)
        return self._isolated(sequences, compute, first) + self._isolated(sequences, compute, second)

    def _fail(self, sequence: _Sequence, error: Exception) -> None:
        log.error("a sequence failed and was ended (%s: %s)", type(error).__name__, error, exc_info=error)
        sequence.failed = True
        if not sequence.cancelled:
            self._outbox.append((sequence.request.on_event, Failed(f"internal error: {type(error).__name__}: {error}")))
        self._retire(sequence, "failed")

    def _keep_final_state(self, sequence: _Sequence, h: torch.Tensor, c: torch.Tensor) -> None:
        keep = sequence.request.on_final_state
        if keep is None:
            return
        try:  # clones: a view would hold the whole batch's memory
            keep((h.clone(), c.clone()), sequence.generated[:-1])
        except Exception:
            log.exception("keeping a conversation's state failed")

    def _retire(self, sequence: _Sequence, outcome: str) -> None:
        with self._lock:
            self._live -= 1
        self.counters[outcome] += 1

    def _end_everything(self, event: Failed) -> None:
        for sequence in [*self._reading, *self._batch.sequences, *self._take_incoming()]:
            if not sequence.cancelled:
                self._outbox.append((sequence.request.on_event, event))
            self._retire(sequence, "failed")
        self._reading = []
        self._batch = _Batch(self.device)
        self._flush()

    def _flush(self) -> None:
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            try:
                self.deliver(outbox)
            except Exception:
                log.exception("delivering events failed")


# --- the engine's parts --------------------------------------------------------------------------


class _Sequence:
    """One sequence being generated: where it stands in its prompt, its random stream and its text."""

    def __init__(self, request: GenerationRequest, tokenizer: TextTokenizer):
        self.request = request
        self.options = request.options
        self.rng = make_rng(request.options.seed)
        self.read_ids = torch.as_tensor(request.read_ids, dtype=torch.long)
        self.position = 0  # in read_ids
        self.state = request.state
        self.decoder = TextDecoder(tokenizer, [int(i) for i in request.decode_context[-DECODE_CONTEXT:]])
        self.stop_filter = StopStringFilter(request.options.stop)
        self.generated: list[int] = []
        self.cancelled = False
        self.failed = False
        self.prompt_scores: list[TokenLogprobs] = []  # of the chunks read so far, with prompt_logprobs

    def score_prompt_chunk(self, model: LSTMLanguageModel, hidden: torch.Tensor) -> list[TokenLogprobs]:
        """Log-probabilities of the ids that follow the chunk read from `position` (hidden [length, hidden])."""
        targets = self.read_ids[
            self.position + 1 : self.position + 1 + len(hidden)
        ]  # the last position predicts a new token
        top = self.request.prompt_logprobs
        scores = []
        for start in range(0, len(targets), SCORED_POSITIONS):
            logits = model.logits(hidden[start : start + SCORED_POSITIONS][: len(targets) - start])
            scores.append(token_logprobs(logits, targets[start : start + SCORED_POSITIONS], top))
        return scores

    def prompt_scores_event(self, last_chunk: list[TokenLogprobs]) -> TokenScores:
        """The TokenScores of the whole prompt: the chunks scored so far and the last one's."""
        parts = self.prompt_scores + last_chunk
        ids = self.read_ids[1:].tolist()
        if not parts:
            return TokenScores(True, ids, [], [], [])
        chosen = torch.cat([p.chosen for p in parts]).tolist()
        top_ids = torch.cat([p.top_ids for p in parts]).tolist()
        top_logprobs = torch.cat([p.top_logprobs for p in parts]).tolist()
        return TokenScores(True, ids, chosen, top_ids, top_logprobs)

    def take(self, token: int, outbox: list) -> bool:
        """Add a picked token; queue its text; False when the sequence has ended."""
        self.generated.append(token)
        emit = self.request.on_event
        if token != EOT_ID:
            text = self.stop_filter.push(self.decoder.push(token))
            if text:
                outbox.append((emit, TextPiece(text)))
            if self.stop_filter.stopped:
                outbox.append((emit, Finished("stop", len(self.generated))))
                return False
            if len(self.generated) < self.options.max_tokens:
                return True
        text = self.stop_filter.push(self.decoder.flush())
        if not self.stop_filter.stopped:
            text += self.stop_filter.flush()
        if text:
            outbox.append((emit, TextPiece(text)))
        ended_by_model = token == EOT_ID or self.stop_filter.stopped
        count = len(self.generated) - (token == EOT_ID)
        outbox.append((emit, Finished("stop" if ended_by_model else "length", count)))
        return False


@dataclass
class _ReadChunk:
    """A chunk of each reading row's prompt, read: its length, the states after it, its prompt scores
    (of a row that asks for them) and, where the prompt ends, the whole prompt's TokenScores; the rows
    whose prompts end there and that generate, with their next-token logits."""

    lengths: list[int]
    h: torch.Tensor
    c: torch.Tensor
    scores: list[list[TokenLogprobs]]
    prompt_scores: list[TokenScores | None]
    joining: list[int]
    logits: torch.Tensor | None


@dataclass
class _Joining:
    """Sequences whose prompts are read, to join the batch: their states and next-token logits."""

    sequences: list[_Sequence]
    h: torch.Tensor
    c: torch.Tensor
    logits: torch.Tensor | None


@dataclass
class _TokenStep:
    """A token picked for each of some generating rows, the TokenScores of those that ask, and the
    model step that reads the tokens: next-token logits and state."""

    tokens: torch.Tensor
    token_scores: list[tuple[Callable, TokenScores]]  # (on_event, TokenScores) of the rows that ask
    logits: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor

    @staticmethod
    def cat(steps: list[_TokenStep]) -> _TokenStep:
        return _TokenStep(
            torch.cat([s.tokens for s in steps]),
            [pair for s in steps for pair in s.token_scores],
            torch.cat([s.logits for s in steps]),
            torch.cat([s.h for s in steps], dim=1),
            torch.cat([s.c for s in steps], dim=1),
        )


@dataclass
class _Batch:
    """The generating sequences and their rows: state, next-token logits, seen tokens, settings."""

    device: torch.device
    sequences: list[_Sequence] = field(default_factory=list)
    h: torch.Tensor | None = None
    c: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    seen: torch.Tensor | None = None
    settings: RowSettings | None = None
    scoring: int = 0  # sequences that asked for the log-probabilities of the tokens they pick

    def join(
        self, sequences: list[_Sequence], h: torch.Tensor, c: torch.Tensor, logits: torch.Tensor, vocab_size: int
    ) -> None:
        """Add rows; if it raises, the batch is as it was."""
        seen = torch.zeros(len(sequences), vocab_size, dtype=torch.bool, device=self.device)
        for row, sequence in enumerate(sequences):
            ids = torch.as_tensor(sequence.request.seen_ids, dtype=torch.long)
            seen[row, ids[ids != EOT_ID].to(self.device)] = True
        settings = RowSettings.of([s.options for s in sequences], self.device)
        if self.sequences:
            h, c = torch.cat([self.h, h], dim=1), torch.cat([self.c, c], dim=1)
            logits, seen = torch.cat([self.logits, logits]), torch.cat([self.seen, seen])
            settings = RowSettings.cat([self.settings, settings])
        self.h, self.c, self.logits, self.seen, self.settings = h, c, logits, seen, settings
        for sequence in sequences:
            sequence.state = None  # the batch holds it from now on
            self.scoring += sequence.request.logprobs is not None
        self.sequences = self.sequences + sequences

    def keep(self, rows: list[int]) -> None:
        self.sequences = [self.sequences[i] for i in rows]
        if self.scoring:
            self.scoring = sum(s.request.logprobs is not None for s in self.sequences)
        if not rows:
            self.h = self.c = self.logits = self.seen = self.settings = None
            return
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.h, self.c = self.h[:, index], self.c[:, index]
        self.logits, self.seen = self.logits[index], self.seen[index]
        self.settings = self.settings.select(index)
