"""The sampler: logits processing, the generation loop with carried state, streaming and the API."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from textlstm.config import ModelConfig, SamplingOptions
from textlstm.data.tokenizer import build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.generation import decoding
from textlstm.generation.decoding import StopStringFilter, TextDecoder, own_texts
from textlstm.generation.generator import TextGenerator, UnknownTokenWarning
from textlstm.generation.sampler import (
    RowSettings,
    TokenSampler,
    filtered_scores,
    make_rng,
    pick_tokens,
    token_logprobs,
)
from textlstm.generation.stepper import LSTMStepper, sample_tokens
from textlstm.model.network import LSTMLanguageModel
from textlstm.tokens import EOT_ID, PAD_ID

CORPUS = "the quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!\n"


def tiny_generator(hidden: int = 32, seed: int = 0, bias: dict[str, float] | None = None) -> TextGenerator:
    """An untrained char model with well-separated logits (so greedy never hinges on rounding)
    that never picks byte tokens (so its text is plain characters)."""
    tokenizer = build_tokenizer("char", [CORPUS])
    torch.manual_seed(seed)
    config = ModelConfig(
        tokenizer.vocab_size, embedding_size=16, hidden_size=hidden, layers=2, dropout=0, recurrent_dropout=0
    )
    model = LSTMLanguageModel(config)
    with torch.no_grad():
        model.decoder.weight.mul_(20)
        for byte in range(256):
            model.decoder.bias[tokenizer.hf.token_to_id(f"<0x{byte:02X}>")] = -30
        model.decoder.bias[EOT_ID] = -30
        for text, value in (bias or {}).items():
            model.decoder.bias[tokenizer.hf.token_to_id(text)] = value
    return TextGenerator(model.eval(), tokenizer)


@pytest.fixture(scope="module")
def lm() -> TextGenerator:
    return tiny_generator()


def full_prefix_logits(lm: TextGenerator, ids: list[int]) -> torch.Tensor:
    """Next-token logits from re-running the whole text: the slow reference for the carried state."""
    with torch.no_grad():
        logits, _ = lm.model(torch.tensor([ids]))
    return logits[0, -1]


# --- the generation loop --------------------------------------------------------------------------


def test_same_seed_same_text_and_different_seeds_differ(lm):
    first = lm.generate("the ", max_tokens=60, seed=11, temperature=1.0)
    assert first == lm.generate("the ", max_tokens=60, seed=11, temperature=1.0)
    assert len(first) == 60
    others = {lm.generate("the ", max_tokens=60, seed=s, temperature=1.0) for s in (12, 13, 14)}
    assert first not in others and len(others) == 3


def test_sampling_does_not_touch_the_global_rng(lm):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    lm.generate("the ", max_tokens=20, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_greedy_takes_the_argmax_of_a_full_rerun_at_every_step(lm):
    """Greedy tokens from the carried (h, c) equal those of a loop that re-reads the whole prefix."""
    prompt = lm.tokenizer.encode("the lazy ")
    stepper = lm.new_stepper(prompt)
    sampler = TokenSampler(SamplingOptions(temperature=0), lm.tokenizer.vocab_size, make_rng(0))
    fast = list(sample_tokens(stepper, sampler, 80))

    ids = [EOT_ID, *prompt]
    for _ in range(80):
        logits = full_prefix_logits(lm, ids)
        logits[PAD_ID] = -float("inf")
        ids.append(int(torch.argmax(logits)))
    assert fast == ids[len(prompt) + 1 :]


def test_carried_state_gives_the_logits_of_a_full_rerun(lm):
    ids = [EOT_ID, *lm.tokenizer.encode("over the")]
    stepper = LSTMStepper(lm.model)
    stepper.read(ids)
    for token in lm.tokenizer.encode(" quick brown fox"):
        torch.testing.assert_close(stepper.logits, full_prefix_logits(lm, ids), atol=1e-4, rtol=1e-4)
        stepper.read([token])
        ids.append(token)
    torch.testing.assert_close(stepper.logits, full_prefix_logits(lm, ids), atol=1e-4, rtol=1e-4)


def test_prompt_is_read_in_one_forward_pass_and_each_token_is_one_step(lm, monkeypatch):
    calls = []
    original = lm.model.hidden_states
    monkeypatch.setattr(
        lm.model, "hidden_states", lambda ids, *a, **k: calls.append(ids.shape) or original(ids, *a, **k)
    )
    steps = []
    original_step = lm.model.step
    monkeypatch.setattr(lm.model, "step", lambda ids, state: steps.append(ids.tolist()) or original_step(ids, state))
    text = lm.generate("the quick", max_tokens=50, seed=3)
    assert calls == [torch.Size([1, 1 + len("the quick")])]  # end of text + prompt, once
    assert len(steps) == 50 and len(text) == 50


def test_empty_prompt_starts_from_end_of_text(lm):
    text = lm.generate("", temperature=0, max_tokens=30)
    ids = [EOT_ID]
    for _ in range(30):
        logits = full_prefix_logits(lm, ids)
        logits[PAD_ID] = -float("inf")
        ids.append(int(torch.argmax(logits)))
    assert text == lm.tokenizer.decode(ids[1:])


def test_end_of_text_stops_generation():
    lm = tiny_generator(bias={"<|endoftext|>": 100})
    assert lm.generate("the", max_tokens=50, seed=0) == ""
    lm = tiny_generator(bias={"x": 100})
    assert lm.generate("the", max_tokens=50, seed=0) == "x" * 50


def test_padding_is_never_sampled():
    logits = torch.zeros(10)
    logits[PAD_ID] = 50.0
    for temperature in (0.0, 1.0, 5.0):
        sampler = TokenSampler(SamplingOptions(temperature=temperature), 10, make_rng(0))
        assert all(sampler(logits) != PAD_ID for _ in range(300))


def test_stop_strings_end_the_output_before_them(lm):
    full = lm.generate("the ", max_tokens=80, seed=4, temperature=1.0)
    stop = full[30:33]
    cut = full.find(stop)
    assert lm.generate("the ", max_tokens=80, seed=4, temperature=1.0, stop=[stop]) == full[:cut]
    other = full[50:52]
    both = lm.generate("the ", max_tokens=80, seed=4, temperature=1.0, stop=[stop, other])
    assert both == full[: min(cut, full.find(other))]
    assert lm.generate("the ", max_tokens=80, seed=4, temperature=1.0, stop=["never in this text"]) == full


def test_stop_filter_holds_back_a_possible_start_and_catches_stops_split_over_pieces():
    stop_filter = StopStringFilter(["END"])
    assert stop_filter.push("abc E") == "abc "
    assert stop_filter.push("N") == ""
    assert stop_filter.push("x") == "ENx"  # it was not the stop string after all
    assert stop_filter.push("yE") == "y"
    assert stop_filter.push("ND and more") == "" and stop_filter.stopped
    stop_filter = StopStringFilter(["\n\n", "ab"])
    assert stop_filter.push("x\n") == "x"
    assert stop_filter.push("ab") == "\n" and stop_filter.stopped


def test_stream_yields_pieces_before_the_generation_ends(lm, monkeypatch):
    sampled = []
    original = TokenSampler.__call__
    monkeypatch.setattr(TokenSampler, "__call__", lambda self, logits: sampled.append(1) or original(self, logits))
    pieces = lm.stream("the ", max_tokens=500, seed=1)
    first = next(pieces)
    assert first and len(sampled) <= 2  # the first piece came after one or two tokens, not 500
    rest = list(pieces)
    assert len(sampled) == 500 and len(rest) >= 400


def test_options_are_checked():
    for bad in (
        dict(temperature=-1),
        dict(top_k=-3),
        dict(top_p=0),
        dict(top_p=1.5),
        dict(max_tokens=0),
        dict(repetition_penalty=0),
        dict(stop=[""]),
    ):
        with pytest.raises(TextlstmError):
            SamplingOptions(**bad)


# --- text decoding and unknown input --------------------------------------------------------------


def test_partial_utf8_bytes_are_held_back_until_the_character_is_complete():
    tokenizer = build_tokenizer("char", [CORPUS])
    decoder = TextDecoder(tokenizer)
    ids = tokenizer.encode("aé😀b")  # é and 😀 are unseen: byte fallback, 2 and 4 tokens
    assert len(ids) == 1 + 2 + 4 + 1
    assert [decoder.push(i) for i in ids] == ["a", "", "é", "", "", "", "😀", "b"]
    assert decoder.push(ids[1]) == "" and decoder.flush() == "\ufffd"  # an unfinished character at the end


def test_runs_of_invalid_bytes_decode_without_crashing():
    tokenizer = build_tokenizer("char", [CORPUS])
    c3, a9, x80 = (tokenizer.hf.token_to_id(f"<0x{b:02X}>") for b in (0xC3, 0xA9, 0x80))
    a = tokenizer.hf.token_to_id("a")
    decoder = TextDecoder(tokenizer)
    text = "".join(decoder.push(i) for i in [a, c3, a9, x80, x80, a]) + decoder.flush()
    assert text == "aé\ufffd\ufffda"


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_looked_up_token_texts_decode_as_the_stream_decoder_does(kind, monkeypatch):
    """Char and word tokens' texts are looked up (byte tokens still go through DecodeStream): the
    pieces are those of decoding every token with the stream, and whole they are decode(ids)."""
    tokenizer = build_tokenizer(kind, [CORPUS * 3 + "né ñ 😀"])
    assert (own_texts(tokenizer) is None) == (kind == "bpe")
    ids = [i for i in range(tokenizer.vocab_size) if i not in (PAD_ID, EOT_ID)]
    rng = torch.Generator().manual_seed(0)
    streams = [[ids[j] for j in torch.randint(len(ids), (60,), generator=rng).tolist()] for _ in range(30)]
    streams.append(tokenizer.encode("aé😀b and ñ, né"))
    looked_up, streamed = [], []
    for stream in streams:
        decoder = TextDecoder(tokenizer)
        looked_up.append([decoder.push(i) for i in stream] + [decoder.flush()])
    monkeypatch.setattr(decoding, "own_texts", lambda tokenizer: None)
    for stream in streams:
        decoder = TextDecoder(tokenizer)
        streamed.append([decoder.push(i) for i in stream] + [decoder.flush()])
    assert looked_up == streamed
    assert ["".join(pieces) for pieces in looked_up[-1:]] == [tokenizer.decode(streams[-1])]


def test_without_stop_strings_the_filter_passes_every_piece_at_once():
    stop_filter = StopStringFilter([])
    assert [stop_filter.push(piece) for piece in ("a", "", "bc\n")] == ["a", "", "bc\n"]
    assert stop_filter.flush() == "" and not stop_filter.stopped


def test_unknown_characters_and_words_in_the_prompt_warn(lm):
    with pytest.warns(UnknownTokenWarning, match="'é'"):
        lm.stream("the café", max_tokens=5, seed=0)
    words = build_tokenizer("word", [CORPUS * 3])
    model = LSTMLanguageModel(ModelConfig(words.vocab_size, embedding_size=8, hidden_size=8, layers=1)).eval()
    with pytest.warns(UnknownTokenWarning, match="zebra"):
        TextGenerator(model, words).generate("the zebra", max_tokens=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm.generate("the quick fox", max_tokens=5, seed=0)


# --- logits processing ----------------------------------------------------------------------------


def process_logits(logits: torch.Tensor, options: SamplingOptions, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The sampler's scores for one row."""
    return filtered_scores(logits[None], RowSettings.of([options]), None if seen is None else seen[None])[0]


def draws(logits: torch.Tensor, n: int, **options) -> torch.Tensor:
    sampler = TokenSampler(SamplingOptions(**options), logits.shape[0], make_rng(0))
    return torch.tensor([sampler(logits) for _ in range(n)])


def fixed_logits(size: int = 40) -> torch.Tensor:
    logits = torch.randn(size, generator=torch.Generator().manual_seed(7)) * 2
    logits[PAD_ID] = -20.0
    return logits


def test_top_k_never_leaves_the_k_most_likely():
    logits = fixed_logits()
    allowed = set(torch.topk(logits, 5).indices.tolist())
    drawn = set(draws(logits, 3000, temperature=3.0, top_k=5).tolist())
    assert drawn == allowed  # all of them, and nothing else


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-8, 8), min_size=3, max_size=30), st.floats(0.01, 0.999))
def test_top_p_keeps_the_smallest_nucleus(values, top_p):
    logits = torch.tensor([-50.0, *values])  # index 0 is the padding token
    kept = torch.isfinite(process_logits(logits, SamplingOptions(temperature=1.0, top_p=top_p)))
    probs = torch.softmax(logits.double(), dim=-1)
    kept_probs = probs[kept]
    assert kept_probs.sum() >= top_p - 1e-6  # enough mass
    assert kept_probs.sum() - kept_probs.min() < top_p + 1e-6  # and no token more than needed
    dropped = probs[~kept][1:]  # [0] is the padding token
    assert dropped.numel() == 0 or kept_probs.min() >= dropped.max() - 1e-6  # the most likely ones


def test_top_p_on_a_known_distribution():
    logits = torch.log(torch.tensor([1e-9, 0.4, 0.3, 0.15, 0.1, 0.05]))

    def kept(top_p: float) -> list[int]:
        processed = process_logits(logits, SamplingOptions(temperature=1.0, top_p=top_p))
        return torch.isfinite(processed).nonzero().flatten().tolist()

    assert kept(0.3) == [1]
    assert kept(0.65) == [1, 2]
    assert kept(0.8) == [1, 2, 3]
    assert kept(1.0) == [1, 2, 3, 4, 5]  # off; padding is always out


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_temperature_draws_follow_softmax_of_logits_over_t(temperature):
    logits = torch.tensor([-30.0, 1.0, 0.5, 0.0, -0.5, -1.5])
    n = 6000
    counts = torch.bincount(draws(logits, n, temperature=temperature), minlength=6).double() / n
    expected = torch.softmax(logits.double() / temperature, dim=-1)
    assert torch.allclose(counts, expected, atol=0.03), (counts, expected)


def test_lower_temperature_is_sharper():
    logits = fixed_logits()
    top = int(torch.argmax(logits))

    def share(temperature: float) -> float:
        return float((draws(logits, 2000, temperature=temperature) == top).double().mean())

    assert share(0.3) > share(1.0) > share(3.0)
    assert set(draws(logits, 50, temperature=0).tolist()) == {top}


def test_a_text_sampled_alone_draws_what_its_row_of_a_batch_draws():
    """TokenSampler (generate, chat) and pick_tokens over a batch (the server) are one sampler."""
    logits = torch.stack([fixed_logits(), fixed_logits().flip(0), fixed_logits() * 0.1])
    options = [
        SamplingOptions(temperature=1.0, top_k=12, seed=3),
        SamplingOptions(temperature=0),
        SamplingOptions(temperature=2.0),
    ]
    alone = TokenSampler(options[0], logits.shape[1], make_rng(3))
    rngs = [make_rng(3), make_rng(None), make_rng(5)]
    settings = RowSettings.of(options)
    for _ in range(200):
        batch = pick_tokens(filtered_scores(logits, settings), settings.greedy, rngs)
        assert int(batch[0]) == alone(logits[0])


def test_token_logprobs_are_the_models_log_softmax_with_the_most_likely_first():
    logits = torch.stack([fixed_logits(), fixed_logits() * 3])
    chosen = torch.tensor([4, 9])
    result = token_logprobs(logits, chosen, top=5)
    expected = torch.log_softmax(logits, dim=-1)
    assert torch.allclose(result.chosen, expected[[0, 1], chosen])
    assert torch.equal(result.top_ids, torch.topk(logits, 5).indices)
    assert torch.allclose(result.top_logprobs, expected.gather(1, result.top_ids))
    assert bool((result.top_logprobs[:, :-1] >= result.top_logprobs[:, 1:]).all())


def test_reading_and_sampling_leave_torchs_thread_count_alone(lm, monkeypatch):
    """The thread count is process-wide: the stepper must not change it at every read."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    lm.generate("the ", max_tokens=30, seed=0)
    assert calls == []


def test_repetition_penalty_follows_ctrl():
    logits = torch.tensor([0.0, 2.0, -2.0, 2.0, -2.0])
    seen = torch.tensor([False, True, True, False, False])
    out = process_logits(logits, SamplingOptions(temperature=0, repetition_penalty=2.0), seen)
    assert out[1:].tolist() == [1.0, -4.0, 2.0, -2.0]


def test_repetition_penalty_lowers_the_probability_of_repeats():
    logits = fixed_logits()
    top = int(torch.argmax(logits))
    plain = draws(logits, 1000, temperature=1.0).tolist()
    # With the penalty, each draw is marked seen: the favourite is drawn far less often.
    penalized = draws(logits, 1000, temperature=1.0, repetition_penalty=3.0).tolist()
    assert penalized.count(top) < plain.count(top) / 2
    assert len(set(penalized)) > len(set(plain))


# --- cost per token -------------------------------------------------------------------------------


def test_each_token_of_a_long_text_is_one_step_of_the_same_size(monkeypatch):
    """Token 2,000 costs what token 1 costs: one model.step on one id and a state that does not grow,
    and the prompt is the only sequence read."""
    lm = tiny_generator(hidden=32)
    shapes, sequences = set(), []
    original_step, original_read = lm.model.step, lm.model.hidden_states
    monkeypatch.setattr(
        lm.model,
        "step",
        lambda ids, state: (
            shapes.add((tuple(ids.shape), tuple(state[0].shape), tuple(state[1].shape))) or original_step(ids, state)
        ),
    )
    monkeypatch.setattr(
        lm.model, "hidden_states", lambda ids, *a, **k: sequences.append(ids.shape) or original_read(ids, *a, **k)
    )
    stepper = lm.new_stepper(lm.tokenizer.encode("the "))
    sampler = TokenSampler(SamplingOptions(temperature=1.0), lm.tokenizer.vocab_size, make_rng(0))
    assert len(list(sample_tokens(stepper, sampler, 2200))) == 2200
    assert shapes == {((1,), (2, 1, 32), (2, 1, 32))}
    assert len(sequences) == 1


def test_a_model_trained_on_a_repeated_sentence_continues_it():
    text = "the cat sat on the mat. " * 40
    tokenizer = build_tokenizer("char", [text])
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(tokenizer.vocab_size, embedding_size=16, hidden_size=48, layers=1, dropout=0, recurrent_dropout=0)
    )
    ids = torch.tensor([[EOT_ID, *tokenizer.encode(text)]])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        total, count, _ = model.loss(ids[:, :-1], ids[:, 1:])
        optimizer.zero_grad()
        (total / count).backward()
        optimizer.step()
    lm = TextGenerator(model.eval(), tokenizer)
    assert lm.generate("the cat", temperature=0, max_tokens=40) == " sat on the mat. the cat sat on the mat."
