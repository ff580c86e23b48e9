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

import torch

from textlstm.config import SamplingOptions
from textlstm.data.tokenizer import TextTokenizer
from textlstm.generation.decoding import DECODE_CONTEXT, StopStringFilter, TextDecoder
from textlstm.generation.sampler import RowSettings, TokenLogprobs, filtered_scores, make_rng, pick_tokens, token_logprobs
from textlstm.model.network import LSTMLanguageModel, State
from textlstm.tokens import EOT_ID

log = logging.getLogger("textlstm.serve")

PROMPT_STEP_SECONDS = 0.04  # prompt reading per step while others generate: what their next token waits
MIN_PROMPT_CHUNK = 16
SCORED_POSITIONS = 256  # prompt positions whose logits are held at once when a prompt is scored


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
    message: str


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
        self.counters = {"steps": 0, "tokens_generated": 0, "prompt_tokens_read": 0, "finished": 0, "cancelled": 0, "failed": 0}

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
        """End every sequence with Failed("server is shutting down") and stop the thread."""
        with self._lock:
            self._stopping = True
        self._incoming.put(None)  # wakes the loop if it waits for work
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def stats(self) -> dict:
        with self._lock:
            live = self._live
        return {"sequences": live, "generating": len(self._batch.sequences), "reading_prompt": len(self._reading), **self.counters}

    # -- the loop (engine thread)

    def _run(self) -> None:
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            while True:
                self._admit(wait=not (self._reading or self._batch.sequences))
                if self._stopping:
                    self._end_everything("server is shutting down")
                    return
                self._drop_cancelled()
                try:
                    self._read_prompts()
                    self._generate_step()
                except Exception as error:  # a bug or out of memory: fail these requests, keep serving
                    log.exception("engine step failed")
                    self._end_everything(f"internal error: {type(error).__name__}: {error}")
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
        rows = self._reading
        lengths = [min(chunk, len(s.read_ids) - s.position) for s in rows]
        states = [s.state or self.model.initial_state(1) for s in rows]
        h = torch.cat([state[0] for state in states], dim=1)
        c = torch.cat([state[1] for state in states], dim=1)
        started = time.perf_counter()
        hidden, (h, c) = self._read_side_by_side(rows, lengths, (h, c))
        self._measure_prompt_speed(max(lengths), time.perf_counter() - started)
        self.counters["prompt_tokens_read"] += sum(lengths)
        done = []
        for i, (sequence, length) in enumerate(zip(rows, lengths)):
            if sequence.request.prompt_logprobs is not None:
                sequence.score_prompt_chunk(self.model, hidden[i, :length])
            sequence.position += length
            sequence.state = (h[:, i : i + 1], c[:, i : i + 1])
            if sequence.position == len(sequence.read_ids):
                done.append(i)
        if not done:
            return
        for i in done:
            rows[i].send_prompt_scores(self._outbox)
        joining = [i for i in done if rows[i].request.generate]
        for i in done:
            if not rows[i].request.generate:
                self._outbox.append((rows[i].request.on_event, Finished("length", 0)))
                self._retire(rows[i], "finished")
        if joining:
            last = torch.tensor([lengths[i] - 1 for i in joining], device=self.device)
            logits = self.model.logits(hidden[torch.tensor(joining, device=self.device), last])
            self._batch.join([rows[i] for i in joining], h[:, joining], c[:, joining], logits, self.model.config.vocab_size)
        finished = set(done)
        self._reading = [s for i, s in enumerate(rows) if i not in finished]

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
            ids = torch.stack([rows[i].read_ids[rows[i].position + done : rows[i].position + end] for i in active]).to(self.device)
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
        scores = filtered_scores(batch.logits, batch.settings, batch.seen)
        tokens = pick_tokens(scores, batch.settings.greedy, [s.rng for s in batch.sequences])
        if batch.scoring:
            self._send_token_scores(tokens)
        going_on = []
        for i, (sequence, token) in enumerate(zip(batch.sequences, tokens.tolist())):
            if sequence.take(token, self._outbox):
                going_on.append(i)
            else:
                self._keep_final_state(sequence, batch.h[:, i : i + 1], batch.c[:, i : i + 1])
                self._retire(sequence, "finished")
        self.counters["tokens_generated"] += len(batch.sequences)
        if len(going_on) < len(batch.sequences):
            batch.keep(going_on)
            tokens = tokens[going_on]
        if not batch.sequences:
            return
        batch.seen[torch.arange(len(going_on), device=self.device), tokens] = True
        batch.logits, (batch.h, batch.c) = self.model.step(tokens, (batch.h, batch.c))
        self.counters["steps"] += 1

    def _send_token_scores(self, tokens: torch.Tensor) -> None:
        """TokenScores of the token each sequence that asked for them has just picked, from its raw logits."""
        batch = self._batch
        rows = [i for i, s in enumerate(batch.sequences) if s.request.logprobs is not None]
        top = max(batch.sequences[i].request.logprobs for i in rows)
        index = torch.tensor(rows, device=self.device)
        figures = token_logprobs(batch.logits[index], tokens[index], top)
        chosen, top_ids, top_logprobs = figures.chosen.tolist(), figures.top_ids.tolist(), figures.top_logprobs.tolist()
        for j, row in enumerate(rows):
            request = batch.sequences[row].request
            k = request.logprobs
            scores = TokenScores(False, [int(tokens[row])], [chosen[j]], [top_ids[j][:k]], [top_logprobs[j][:k]])
            self._outbox.append((request.on_event, scores))

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

    def _end_everything(self, message: str) -> None:
        for sequence in [*self._reading, *self._batch.sequences, *self._take_incoming()]:
            if not sequence.cancelled:
                self._outbox.append((sequence.request.on_event, Failed(message)))
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
        self.prompt_scores: list[TokenLogprobs] = []  # of the chunks read so far, with prompt_logprobs

    def score_prompt_chunk(self, model: LSTMLanguageModel, hidden: torch.Tensor) -> None:
        """Log-probabilities of the ids that follow this chunk's positions (hidden [length, hidden])."""
        targets = self.read_ids[self.position + 1 : self.position + 1 + len(hidden)]  # the last position predicts a new token
        top = self.request.prompt_logprobs
        for start in range(0, len(targets), SCORED_POSITIONS):
            logits = model.logits(hidden[start : start + SCORED_POSITIONS][: len(targets) - start])
            self.prompt_scores.append(token_logprobs(logits, targets[start : start + SCORED_POSITIONS], top))

    def send_prompt_scores(self, outbox: list) -> None:
        if self.request.prompt_logprobs is None:
            return
        parts, self.prompt_scores = self.prompt_scores, []
        ids = self.read_ids[1:].tolist()
        if not parts:
            outbox.append((self.request.on_event, TokenScores(True, ids, [], [], [])))
            return
        chosen = torch.cat([p.chosen for p in parts]).tolist()
        top_ids = torch.cat([p.top_ids for p in parts]).tolist()
        top_logprobs = torch.cat([p.top_logprobs for p in parts]).tolist()
        outbox.append((self.request.on_event, TokenScores(True, ids, chosen, top_ids, top_logprobs)))

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

    def join(self, sequences: list[_Sequence], h: torch.Tensor, c: torch.Tensor, logits: torch.Tensor, vocab_size: int) -> None:
        seen = torch.zeros(len(sequences), vocab_size, dtype=torch.bool, device=self.device)
        for row, sequence in enumerate(sequences):
            ids = torch.as_tensor(sequence.request.seen_ids, dtype=torch.long)
            seen[row, ids[ids != EOT_ID].to(self.device)] = True
            sequence.state = None  # the batch holds it from now on
            self.scoring += sequence.request.logprobs is not None
        settings = RowSettings.of([s.options for s in sequences], self.device)
        if not self.sequences:
            self.h, self.c, self.logits, self.seen, self.settings = h, c, logits, seen, settings
        else:
            self.h, self.c = torch.cat([self.h, h], dim=1), torch.cat([self.c, c], dim=1)
            self.logits, self.seen = torch.cat([self.logits, logits]), torch.cat([self.seen, seen])
            self.settings = RowSettings.cat([self.settings, settings])
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
