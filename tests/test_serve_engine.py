"""The serving engine: batched logits processing and continuous batching (no HTTP, no extra needed)."""

from __future__ import annotations

import threading

import pytest
import torch

from conftest import TINY_CORPUS, tiny_char_model
from textlstm.config import SamplingOptions
from textlstm.data.tokenizer import build_tokenizer
from textlstm.generation.generator import TextGenerator
from textlstm.generation.sampler import RowSettings, filtered_scores, pick_tokens
from textlstm.serve.engine import (
    Engine,
    EngineBusy,
    EngineStopped,
    Failed,
    Finished,
    GenerationRequest,
    TextPiece,
    TokenScores,
)
from textlstm.serve.logprobs import TokenNames
from textlstm.tokens import EOT_ID

WAIT = 60  # seconds: a bound on every wait, never reached when things work


# --- batched logits processing ---------------------------------------------------------------------

MIXED_OPTIONS = [
    SamplingOptions(temperature=0.0),
    SamplingOptions(temperature=0.0, repetition_penalty=1.3),
    SamplingOptions(temperature=1.0),
    SamplingOptions(temperature=0.7, top_k=5),
    SamplingOptions(temperature=1.3, top_p=0.6),
    SamplingOptions(temperature=0.9, top_k=12, top_p=0.8, repetition_penalty=1.5),
    SamplingOptions(temperature=2.0, top_k=1),
    SamplingOptions(temperature=0.5, top_p=0.05),
    SamplingOptions(temperature=1.0, top_k=1000),  # more than the vocabulary: off
]


def test_each_rows_scores_in_a_batch_are_its_scores_alone():
    gen = torch.Generator().manual_seed(0)
    vocab = 40
    logits = torch.randn(len(MIXED_OPTIONS), vocab, generator=gen) * 3
    seen = torch.rand(len(MIXED_OPTIONS), vocab, generator=gen) < 0.3
    batched = filtered_scores(logits, RowSettings.of(MIXED_OPTIONS), seen)
    for row, options in enumerate(MIXED_OPTIONS):
        expected = filtered_scores(logits[row : row + 1], RowSettings.of([options]), seen[row : row + 1])[0]
        assert torch.equal(torch.isinf(batched[row]), torch.isinf(expected)), options
        finite = ~torch.isinf(expected)
        assert torch.allclose(batched[row][finite], expected[finite], atol=1e-6), options
    kept = (~torch.isinf(batched)).sum(dim=1).tolist()
    assert kept[3] == 5 and kept[6] == 1 and kept[7] == 1 and kept[0] == vocab - 1  # the filters did act


def test_picked_tokens_follow_each_rows_own_generator_and_distribution():
    scores = torch.log(torch.tensor([[0.0, 0.25, 0.75, 0.0]] * 3))
    greedy = torch.tensor([True, False, False])
    rngs = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    counts = torch.zeros(4)
    for _ in range(2000):
        tokens = pick_tokens(scores, greedy, rngs)
        assert tokens[0] == 2  # greedy: the argmax
        counts += torch.bincount(tokens[1:], minlength=4)
    assert counts[0] == 0 and counts[3] == 0  # probability 0: never picked
    assert 0.70 < counts[2] / counts.sum() < 0.80

    # A row's draws depend on its own generator only, not on the rows beside it.
    flat = torch.zeros(1, 50)  # 50 equally likely tokens: the draw shows which uniform number was used
    alone = [int(pick_tokens(flat, torch.tensor([False]), [torch.Generator().manual_seed(s)])) for s in range(8)]
    for seed in range(8):
        beside = [
            torch.Generator().manual_seed(100 + seed),
            torch.Generator().manual_seed(seed),
            torch.Generator().manual_seed(7),
        ]
        assert int(pick_tokens(flat.expand(3, 50), torch.tensor([False, False, True]), beside)[1]) == alone[seed]
    assert len(set(alone)) > 4


# --- the engine ------------------------------------------------------------------------------------


class Collector:
    """Events of one request, and a flag set when it has ended."""

    def __init__(self):
        self.events: list = []
        self.ended = threading.Event()

    def __call__(self, event) -> None:
        self.events.append(event)
        if isinstance(event, (Finished, Failed)):
            self.ended.set()

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TextPiece))

    @property
    def end(self):
        return self.events[-1]


def deliver_now(pairs):
    for on_event, event in pairs:
        on_event(event)


@pytest.fixture
def lm() -> TextGenerator:
    model, tokenizer, _ = tiny_char_model()
    return TextGenerator(model, tokenizer)


@pytest.fixture
def engine(lm):
    engine = Engine(lm.model, lm.tokenizer, deliver_now, prompt_chunk=8, idle_prompt_chunk=16)
    engine.start()
    yield engine
    engine.shutdown()


def submit(engine: Engine, lm: TextGenerator, prompt: str, **options) -> Collector:
    collector = Collector()
    ids = lm.encode(prompt)
    engine.submit(
        GenerationRequest([EOT_ID, *ids], SamplingOptions(**options), collector, seen_ids=ids, decode_context=ids)
    )
    return collector


def wait_all(*collectors: Collector) -> None:
    for collector in collectors:
        assert collector.ended.wait(WAIT), "the engine did not finish a request"


def test_each_sequence_in_a_batch_gets_what_it_would_get_alone(engine, lm):
    requests = [
        ("the quick", dict(temperature=0, max_tokens=30)),
        ("brown fox " * 20, dict(temperature=0, max_tokens=25, repetition_penalty=1.4)),  # a prompt read in chunks
        ("lazy", dict(temperature=1.0, top_p=0.9, max_tokens=40, seed=7)),
        ("dog", dict(temperature=0.8, top_k=4, max_tokens=35, seed=3)),
        ("", dict(temperature=1.2, max_tokens=20, seed=11)),
    ]
    collectors = [submit(engine, lm, prompt, **options) for prompt, options in requests]
    wait_all(*collectors)
    for (prompt, options), collector in zip(requests, collectors):
        assert collector.end == Finished("length", options["max_tokens"])
        assert len(collector.text) == options["max_tokens"]
        if options["temperature"] == 0:
            assert collector.text == lm.generate(prompt, **options)
    # A seeded sequence is reproducible, alone or with others.
    again = submit(engine, lm, "lazy", **requests[2][1])
    wait_all(again)
    assert again.text == collectors[2].text
    assert submit(engine, lm, "lazy", **{**requests[2][1], "seed": 8}).ended.wait(WAIT)
    assert engine.stats()["sequences"] == 0


def test_a_long_prompt_is_read_in_chunks_while_others_generate(engine, lm):
    order = []
    long_prompt = "the quick brown fox jumps over the lazy dog. " * 40  # 1,800 tokens: 225 chunks of 8

    def tagged(name, collector):
        def on_event(event):
            order.append(name)
            collector(event)

        return on_event

    short, long = Collector(), Collector()
    ids = lm.encode(long_prompt)
    engine.submit(
        GenerationRequest([EOT_ID, 5], SamplingOptions(temperature=0, max_tokens=100), tagged("short", short))
    )
    engine.submit(
        GenerationRequest(
            [EOT_ID, *ids], SamplingOptions(temperature=0, max_tokens=5), tagged("long", long), decode_context=ids
        )
    )
    wait_all(short, long)
    assert order.index("long") > 50  # the short one kept generating while the long prompt was read
    assert long.text == lm.generate(long_prompt, temperature=0, max_tokens=5)
    assert engine.counters["prompt_tokens_read"] == 2 + len(ids) + 1


def test_stop_strings_and_end_of_text_end_a_sequence(lm):
    model, tokenizer, _ = tiny_char_model(bias={"<|endoftext|>": 100})
    engine = Engine(model, tokenizer, deliver_now)
    engine.start()
    try:
        ends_at_once = submit(engine, TextGenerator(model, tokenizer), "the", temperature=0, max_tokens=10)
        wait_all(ends_at_once)
        assert ends_at_once.events == [Finished("stop", 0)]
    finally:
        engine.shutdown()
    engine = Engine(lm.model, lm.tokenizer, deliver_now)
    engine.start()
    try:
        free = submit(engine, lm, "the", temperature=0, max_tokens=40)
        wait_all(free)
        stop = free.text[10:13]
        stopped = submit(engine, lm, "the", temperature=0, max_tokens=40, stop=[stop])
        wait_all(stopped)
        assert stopped.text == free.text[: free.text.index(stop)]
        assert stopped.end.reason == "stop"
    finally:
        engine.shutdown()


def wait_until(condition) -> None:
    for _ in range(WAIT * 100):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out")


def test_cancelled_sequences_leave_and_deliver_nothing_more(engine, lm):
    running = [submit(engine, lm, "the", temperature=1.0, max_tokens=100_000, seed=i) for i in range(3)]
    cancelled, handles = [], []
    for i in range(3):
        cancelled.append(Collector())
        handles.append(
            engine.submit(GenerationRequest([EOT_ID, 5], SamplingOptions(max_tokens=100_000, seed=i), cancelled[-1]))
        )
    wait_until(lambda: all(c.events for c in cancelled))
    for handle in handles:
        handle.cancel()
    wait_until(lambda: engine.stats()["sequences"] == 3)
    delivered = [len(c.events) for c in cancelled]
    before = len(running[0].events)
    wait_until(lambda: len(running[0].events) > before + 20)  # the others go on...
    assert [len(c.events) for c in cancelled] == delivered  # ...the cancelled ones get nothing more
    engine.shutdown()
    for collector in running:
        assert isinstance(collector.end, Failed) and "shutting down" in collector.end.message
    assert not any(isinstance(e, (Finished, Failed)) for c in cancelled for e in c.events)
    assert engine.stats()["sequences"] == 0 and engine.counters["cancelled"] == 3


def test_final_state_covers_the_prompt_and_the_generated_ids_it_read(engine, lm):
    kept = {}
    collector = Collector()
    ids = lm.encode("the fox")
    engine.submit(
        GenerationRequest(
            [EOT_ID, *ids],
            SamplingOptions(temperature=0, max_tokens=12),
            collector,
            on_final_state=lambda state, generated: kept.update(state=state, generated=generated),
        )
    )
    wait_all(collector)
    assert len(kept["generated"]) == 11  # the 12th token picked is never read
    assert lm.tokenizer.decode(kept["generated"]) == collector.text[:11]
    reread = lm.new_stepper([*ids, *kept["generated"]]).state
    assert torch.allclose(kept["state"][0], reread[0], atol=1e-5)
    assert torch.allclose(kept["state"][1], reread[1], atol=1e-5)
    assert kept["state"][0].shape == (2, 1, 32) and kept["state"][0].untyped_storage().nbytes() == 2 * 32 * 4

    # Starting from a kept state continues the text exactly like a fresh read of all of it.
    follow = Collector()
    more = lm.encode(collector.text[11:] + " dog")
    engine.submit(GenerationRequest(more, SamplingOptions(temperature=0, max_tokens=10), follow, state=kept["state"]))
    wait_all(follow)
    assert follow.text == lm.generate("the fox" + collector.text + " dog", temperature=0, max_tokens=10)


def test_full_engine_refuses_and_stopped_engine_refuses(lm):
    engine = Engine(lm.model, lm.tokenizer, deliver_now, max_sequences=2)
    engine.start()
    try:
        first = [submit(engine, lm, "a", max_tokens=100_000) for _ in range(2)]
        with pytest.raises(EngineBusy):
            submit(engine, lm, "a")
    finally:
        engine.shutdown()
    assert all(isinstance(c.end, Failed) for c in first)
    with pytest.raises(EngineStopped):
        submit(engine, lm, "a")
    assert engine.stats()["sequences"] == 0


def test_prompt_chunks_sized_by_reading_speed_read_the_prompt_exactly(lm):
    engine = Engine(lm.model, lm.tokenizer, deliver_now)  # prompt_chunk None: sized by measured speed
    engine.start()
    try:
        long_prompt = "the quick brown fox jumps over the lazy dog. " * 100
        short = submit(engine, lm, "the", temperature=0, max_tokens=300)
        long = submit(engine, lm, long_prompt, temperature=0, max_tokens=5)
        wait_all(short, long)
    finally:
        engine.shutdown()
    assert long.text == lm.generate(long_prompt, temperature=0, max_tokens=5)
    assert short.text == lm.generate("the", temperature=0, max_tokens=300)


def test_token_scores_go_only_to_requests_that_ask_and_a_chunked_prompt_is_scored_as_one_pass(engine, lm):
    """The prompt is read in chunks of 16; its scores are still the model's log-softmax at every
    position of one forward pass, and each picked token's score comes before its text."""
    ids = [EOT_ID, *lm.encode("the quick brown fox jumps over the lazy dog. " * 3)]  # 136 ids: 9 chunks
    scored, plain, score_only = Collector(), Collector(), Collector()
    options = SamplingOptions(temperature=0, max_tokens=3)
    engine.submit(GenerationRequest(ids, options, scored, logprobs=2, prompt_logprobs=3))
    engine.submit(GenerationRequest(ids, options, plain))
    engine.submit(GenerationRequest(ids, options, score_only, prompt_logprobs=0, generate=False))
    wait_all(scored, plain, score_only)

    with torch.inference_mode():
        expected = torch.log_softmax(lm.model(torch.tensor([ids]))[0][0], dim=-1)  # [positions, vocab]
    prompt = scored.events[0]
    assert prompt.prompt and prompt.ids == ids[1:]
    assert torch.allclose(torch.tensor(prompt.logprobs), expected[torch.arange(len(ids) - 1), ids[1:]], atol=1e-5)
    assert prompt.top_ids == torch.topk(expected[:-1], 3).indices.tolist()
    picked = [e for e in scored.events[1:] if isinstance(e, TokenScores)]
    assert [len(e.ids) for e in picked] == [1, 1, 1] and not any(e.prompt for e in picked)
    assert isinstance(scored.events[1], TokenScores) and isinstance(scored.events[2], TextPiece)  # the score first
    first = picked[0]
    assert first.top_ids[0][0] == first.ids[0]  # greedy: the most likely token
    assert abs(first.logprobs[0] - float(expected[-1].max())) < 1e-5 and len(first.top_ids[0]) == 2
    assert scored.text == plain.text == lm.generate(lm.tokenizer.decode(ids[1:]), temperature=0, max_tokens=3)

    assert not any(isinstance(e, TokenScores) for e in plain.events)
    assert [type(e) for e in score_only.events] == [TokenScores, Finished]
    # The two requests may share a batch or not; a different batch size sums in another order.
    assert torch.allclose(torch.tensor(score_only.events[0].logprobs), torch.tensor(prompt.logprobs), atol=1e-5)
    assert score_only.events[0].top_ids == [[]] * (len(ids) - 1)
    assert score_only.end == Finished("length", 0)
    assert engine.stats()["sequences"] == 0


def test_prompts_of_different_lengths_are_read_side_by_side_in_dense_passes(lm, monkeypatch):
    """Rows whose next pieces differ in length are read in passes from the shortest to the longest,
    each a dense block (a ragged batch would take the packed LSTM kernel, half as fast); each row's
    scores and continuation are what it gets alone."""
    texts = ["the", "quick brown fox", "quick brown fox", "jumps over the lazy dog. " * 3]
    passes = []
    hidden_states = lm.model.hidden_states

    def recorded(ids, state=None, lengths=None):
        passes.append((ids.shape, lengths))
        return hidden_states(ids, state, lengths)

    monkeypatch.setattr(lm.model, "hidden_states", recorded)
    engine = Engine(lm.model, lm.tokenizer, deliver_now, idle_prompt_chunk=1024)
    collectors = []
    for text in texts:  # all waiting when the engine starts: read in its first turn
        collectors.append(Collector())
        ids = [EOT_ID, *lm.encode(text)]
        engine.submit(
            GenerationRequest(
                ids,
                SamplingOptions(temperature=0, max_tokens=4),
                collectors[-1],
                seen_ids=ids[1:],
                decode_context=ids[1:],
                prompt_logprobs=0,
            )
        )
    engine.start()
    try:
        wait_all(*collectors)
    finally:
        engine.shutdown()
    lengths = sorted({len(lm.encode(text)) + 1 for text in texts})
    widths = [b - a for a, b in zip([0, *lengths], lengths)]
    assert [shape for shape, _ in passes[:3]] == [(4, widths[0]), (3, widths[1]), (1, widths[2])]
    assert all(ragged is None for _, ragged in passes)
    for text, collector in zip(texts, collectors):
        ids = [EOT_ID, *lm.encode(text)]
        with torch.inference_mode():
            expected = torch.log_softmax(lm.model(torch.tensor([ids]))[0][0], dim=-1)
        scores = collector.events[0]
        assert torch.allclose(torch.tensor(scores.logprobs), expected[torch.arange(len(ids) - 1), ids[1:]], atol=1e-5)
        assert collector.text == lm.generate(text, temperature=0, max_tokens=4)


@pytest.mark.parametrize("kind", ["char", "bpe", "word"])
def test_each_tokens_bytes_spell_the_text_and_partial_characters_are_named_as_bytes(kind):
    tokenizer = build_tokenizer(kind, [TINY_CORPUS * 20, "héllo wörld € "], 300)
    names = TokenNames(tokenizer)
    text = "the quick héllo ✓ dog" if kind != "word" else "the quick brown fox"  # no ✓ in what it learnt from
    ids = tokenizer.encode(text)
    assert b"".join(bytes(names.byte_values(i)) for i in ids) == text.encode("utf-8")
    for i in ids:
        raw = bytes(names.byte_values(i))
        name = names.name(i)
        try:
            assert name == raw.decode("utf-8")
        except UnicodeDecodeError:
            assert name == "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
    if kind != "word":  # "✓" is three tokens of a byte each, none a whole character: named as bytes
        assert any(names.name(i).startswith("bytes:\\x") for i in ids)
    assert names.name(EOT_ID) == "<|endoftext|>" and names.name(0) == "<|pad|>"


# --- one sequence's failure ---------------------------------------------------------------------------


def test_a_sequence_whose_step_raises_fails_alone_and_the_others_finish_as_they_would_alone(lm, monkeypatch):
    """One request's sampling settings make picking tokens raise; another's prompt makes reading
    raise. Each, all in one batch with two others, ends with Failed; the two others go on to
    the text they get alone, and the engine serves on."""
    import textlstm.serve.engine as engine_module

    failing_top_k = 7
    pick_from = engine_module.filtered_scores

    def filtered_scores_failing_on_one_row(logits, settings, seen=None):
        if bool((settings.top_k == failing_top_k).any()):
            raise RuntimeError("out of memory (as the test makes it)")
        return pick_from(logits, settings, seen)

    marker = lm.encode("z")[0]  # only the failing prompt holds it
    read = lm.model.hidden_states

    def hidden_states_failing_on_one_prompt(ids, state):
        if bool((ids == marker).any()):
            raise RuntimeError("cannot read this prompt (as the test makes it)")
        return read(ids, state)

    monkeypatch.setattr(engine_module, "filtered_scores", filtered_scores_failing_on_one_row)
    monkeypatch.setattr(lm.model, "hidden_states", hidden_states_failing_on_one_prompt)
    engine = Engine(lm.model, lm.tokenizer, deliver_now, prompt_chunk=8, idle_prompt_chunk=16)
    first = submit(engine, lm, "the fox", temperature=0, max_tokens=30)
    failing_step = submit(engine, lm, "the dog", temperature=0.8, top_k=failing_top_k, max_tokens=30)
    failing_prompt = submit(engine, lm, "a lazy zebra", temperature=0, max_tokens=30)
    last = submit(engine, lm, "over the", temperature=0, max_tokens=30)
    engine.start()  # all four were waiting: they are read and generate side by side
    try:
        wait_all(first, failing_step, failing_prompt, last)
        after = submit(engine, lm, "the", temperature=0, max_tokens=5)
        wait_all(after)
    finally:
        engine.shutdown()
    assert isinstance(failing_step.end, Failed) and "out of memory (as the test makes it)" in failing_step.end.message
    assert isinstance(failing_prompt.end, Failed) and "cannot read this prompt" in failing_prompt.end.message
    monkeypatch.undo()
    for collector, prompt in ((first, "the fox"), (last, "over the"), (after, "the")):
        assert isinstance(collector.end, Finished)
        assert collector.text == lm.generate(prompt, temperature=0, max_tokens=collector.end.completion_tokens)
    assert first.end.completion_tokens == last.end.completion_tokens == 30
    counters = engine.stats()
    assert counters["failed"] == 2 and counters["finished"] == 3 and counters["sequences"] == 0


def test_when_the_first_of_two_sequences_fails_the_second_finishes(lm, monkeypatch):
    import textlstm.serve.engine as engine_module

    pick_from = engine_module.filtered_scores

    def failing_on_top_k_7(logits, settings, seen=None):
        if bool((settings.top_k == 7).any()):
            raise RuntimeError("failing (as the test makes it)")
        return pick_from(logits, settings, seen)

    monkeypatch.setattr(engine_module, "filtered_scores", failing_on_top_k_7)
    engine = Engine(lm.model, lm.tokenizer, deliver_now)
    failing = submit(engine, lm, "the dog", temperature=0.8, top_k=7, max_tokens=20)
    going_on = submit(engine, lm, "the fox", temperature=0, max_tokens=20)
    engine.start()
    try:
        wait_all(failing, going_on)
    finally:
        engine.shutdown()
    monkeypatch.undo()
    assert isinstance(failing.end, Failed) and isinstance(going_on.end, Finished)
    assert going_on.text == lm.generate("the fox", temperature=0, max_tokens=20)
