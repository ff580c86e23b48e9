"""`textlstm serve` over real HTTP on 127.0.0.1: the OpenAI-compatible API, streaming, kept
conversations, concurrency, bad input and the official openai client. Skipped without the extra."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import TINY_CORPUS, write_tiny_checkpoint  # noqa: E402
from textlstm.generation.generator import TextGenerator, load  # noqa: E402
from textlstm.serve.app import ServeSettings, create_app  # noqa: E402
from textlstm.serve.conversations import conversation_text  # noqa: E402
from textlstm.serve.server import RunningServer  # noqa: E402
from textlstm.tokens import EOT, EOT_ID  # noqa: E402
from textlstm.turns import TurnFormat  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WAIT = 60  # seconds: a bound on every wait, never reached when things work
TURNS = TurnFormat("Q. ", "B. ")  # characters the tiny model knows


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> TextGenerator:
    return load(write_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny"))


@contextmanager
def serving(lm: TextGenerator, **settings):
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=TURNS, **settings))
    with RunningServer(app, "127.0.0.1", 0) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        client.app, client.url = app, server.url
        yield client


@pytest.fixture(scope="module")
def client(lm):
    with serving(lm) as client:
        yield client


def complete(client, **body) -> dict:
    response = client.post("/v1/completions", json={"model": "tiny", **body})
    assert response.status_code == 200, response.text
    return response.json()


def events(response) -> list:
    """The data of each server-sent event, up to [DONE] (which must come last)."""
    data = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def wait_until_served(client) -> None:
    """Until /health answers 200: the command's server listens before its model is loaded."""
    for _ in range(WAIT * 20):
        if client.get("/health").status_code == 200:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never served: {client.get('/health').text}")


def wait_until_idle(client) -> dict:
    for _ in range(WAIT * 20):
        metrics = client.get("/metrics.json").json()
        if metrics["sequences"] == 0:
            return metrics
        threading.Event().wait(0.05)
    raise AssertionError(f"sequences left active: {metrics}")


# --- the API -------------------------------------------------------------------------------------


def test_models_and_completions_match_the_library(client, lm):
    assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    body = complete(client, prompt="the quick", max_tokens=30, temperature=0)
    assert body["object"] == "text_completion"
    [choice] = body["choices"]
    assert choice["text"] == lm.generate("the quick", max_tokens=30, temperature=0)
    assert choice["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39}
    assert len(complete(client, prompt="the")["choices"][0]["text"]) == 16  # OpenAI's default max_tokens
    # top_p 0 keeps only the most likely token: greedy, whatever the temperature.
    assert (
        complete(client, prompt="the quick", max_tokens=30, temperature=1.5, top_p=0)["choices"][0]["text"]
        == choice["text"]
    )

    stop = choice["text"][5:8]
    stopped = complete(client, prompt="the quick", max_tokens=30, temperature=0, stop=[stop, "never"])
    assert stopped["choices"][0] == {
        **choice,
        "text": choice["text"][: choice["text"].index(stop)],
        "finish_reason": "stop",
    }


def test_textlstm_generate_and_the_server_give_the_same_text_for_a_seed(client, lm, run_cli):
    """One sampler: the same checkpoint, prompt, settings, precision (float32) and seed give the
    same text from the command line and from /v1/completions."""
    settings = {"temperature": 1.0, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.2, "seed": 11}
    served = complete(client, prompt="the quick", max_tokens=60, **settings)["choices"][0]["text"]
    flags = [part for name, value in settings.items() for part in ("--" + name.replace("_", "-"), str(value))]
    result = run_cli("generate", "--checkpoint", lm.checkpoint, "--prompt", "the quick", "--max-tokens", "60", *flags)
    assert result.code == 0, result.err
    assert result.out == "the quick" + served + "\n"
    assert len(set(served)) > 5  # sampled text, not one repeated greedy token


def test_streaming_gives_the_same_text_as_one_response_and_seeds_repeat(client):
    request = {"model": "tiny", "prompt": ["the", "fox"], "max_tokens": 40, "temperature": 1.0, "seed": 7, "n": 2}
    whole = client.post("/v1/completions", json=request).json()
    assert [c["index"] for c in whole["choices"]] == [0, 1, 2, 3]
    with client.stream(
        "POST", "/v1/completions", json={**request, "stream": True, "stream_options": {"include_usage": True}}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = events(response)
    texts = ["", "", "", ""]
    for chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["text"]
    assert texts == [c["text"] for c in whole["choices"]]
    assert chunks[-1]["usage"] == whole["usage"] == {"prompt_tokens": 6, "completion_tokens": 160, "total_tokens": 166}
    # Choice i draws from seed + i: choice 1 of seed 7 is choice 0 of seed 8.
    assert complete(client, prompt="the", max_tokens=40, temperature=1.0, seed=8)["choices"][0]["text"] == texts[1]
    assert texts[0] != texts[1]


def test_chat_reads_the_messages_in_the_turn_format(client, lm):
    messages = [
        {"role": "system", "content": "the fox"},
        {"role": "user", "content": "the dog"},
        {"role": "assistant", "content": "brown"},
        {"role": "user", "content": [{"type": "text", "text": "lazy "}, {"type": "text", "text": "fox"}]},
    ]
    text = conversation_text(
        [("system", "the fox"), ("user", "the dog"), ("assistant", "brown"), ("user", "lazy fox")], TURNS
    )
    assert text == "the fox\nQ. the dog\nB. brown\nQ. lazy fox\nB. "
    response = client.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_tokens": 30, "temperature": 0}
    )
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": lm.generate(text, max_tokens=30, temperature=0, stop=TURNS.stops()),
    }
    assert body["usage"]["prompt_tokens"] == len(lm.tokenizer.encode(text))

    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "tiny", "messages": messages, "max_tokens": 30, "temperature": 0, "stream": True},
    ) as r:
        chunks = events(r)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert (
        "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == body["choices"][0]["message"]["content"]
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"

    newer_name = client.post(
        "/v1/chat/completions", json={"model": "tiny", "messages": messages, "max_completion_tokens": 7}
    ).json()
    assert newer_name["usage"]["completion_tokens"] == 7


# --- scoring: echo, logprobs, token-id prompts, /tokenize -----------------------------------------


def scored(client, **body) -> dict:
    """The one choice of a completion request, with logprobs."""
    [choice] = complete(client, **body)["choices"]
    return choice


def same_figures(a, b) -> bool:
    """Equal, floats to 1e-5: the same row gives logits that differ in the last bits when the batch around it
    differs."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, abs=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_figures(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_figures(x, y) for x, y in zip(a, b))
    return a == b


def test_the_prompts_summed_logprobs_are_textlstm_evals_loss_on_the_same_text(client, lm, run_cli, tmp_path):
    """echo + max_tokens 0 + logprobs 0 scores a prompt as `textlstm eval` scores a text: read after
    the start-of-text token, so the first token has a log-probability too. eval also scores the end
    of text after the last character: sent as the token-id prompt's last token, the sums agree."""
    text = TINY_CORPUS * 3
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    result = run_cli(
        "eval",
        "--checkpoint",
        lm.checkpoint,
        "--dataset",
        tmp_path / "text.txt",
        "--split",
        "train",
        "--json",
        "--precision",
        "float32",
    )  # as the served model's weights
    assert result.code == 0, result.err
    evaluated = json.loads(result.out)
    ids = lm.tokenizer.encode(text)

    with_end = scored(client, prompt=[*ids, EOT_ID], echo=True, max_tokens=0, logprobs=0)
    logprobs = with_end["logprobs"]
    assert len(logprobs["token_logprobs"]) == evaluated["tokens"] == len(ids) + 1
    assert -math.fsum(logprobs["token_logprobs"]) == pytest.approx(evaluated["loss_sum"], rel=1e-5)
    assert logprobs["top_logprobs"] is None and with_end["finish_reason"] == "length"

    as_text = scored(client, prompt=text, echo=True, max_tokens=0, logprobs=0)
    assert as_text["text"] == text
    assert same_figures(
        as_text["logprobs"]["token_logprobs"], logprobs["token_logprobs"][:-1]
    )  # the same ids, the same figures
    assert "".join(as_text["logprobs"]["tokens"]) == text
    assert as_text["logprobs"]["text_offset"] == list(range(len(text)))
    assert logprobs["tokens"][-1] == EOT and with_end["text"] == text + EOT


def test_echo_with_generation_returns_the_prompts_and_the_completions_tokens(client, lm):
    prompt, top = "the quick", 3
    choice = scored(client, prompt=prompt, echo=True, max_tokens=12, logprobs=top, temperature=0)
    completion = lm.generate(prompt, max_tokens=12, temperature=0)
    assert choice["text"] == prompt + completion
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"] and len(logprobs["tokens"]) == len(prompt) + 12
    assert logprobs["text_offset"] == list(range(len(choice["text"])))
    for token, logprob, most_likely in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
        assert most_likely[token] == logprob  # the chosen token is always listed
        assert len(most_likely) in (top, top + 1)  # the `top` most likely, and the chosen one when not among them
    for most_likely in logprobs["top_logprobs"][len(prompt) :]:
        assert len(most_likely) == top  # greedy: the chosen token is the most likely
    # A generated token's log-probability is the one it gets when the whole text is scored as a prompt.
    whole = scored(client, prompt=choice["text"], echo=True, max_tokens=0, logprobs=0)["logprobs"]["token_logprobs"]
    assert logprobs["token_logprobs"] == pytest.approx(whole, abs=1e-5)
    # Without echo: only the completion's tokens, offsets into the completion.
    alone = scored(client, prompt=prompt, max_tokens=12, logprobs=1, temperature=0)
    assert alone["text"] == completion and alone["logprobs"]["tokens"] == logprobs["tokens"][len(prompt) :]
    assert alone["logprobs"]["text_offset"] == list(range(12))
    assert same_figures(alone["logprobs"]["token_logprobs"], logprobs["token_logprobs"][len(prompt) :])
    # echo with n > 1 and several prompts: each choice starts with its own prompt.
    body = complete(client, prompt=["the", "fox"], n=2, echo=True, max_tokens=4, seed=1)
    assert [c["text"][:3] for c in body["choices"]] == ["the", "the", "fox", "fox"]
    assert body["usage"]["prompt_tokens"] == 6 and body["usage"]["completion_tokens"] == 16


def test_token_id_prompts_are_read_like_their_text(client, lm):
    """Token ids are read after the start-of-text token like a text, unless they begin with it
    (as /tokenize lists them by default): then that first token is the start, and has no log-probability."""
    text = "the lazy dog"
    as_text = scored(client, prompt=text, echo=True, max_tokens=5, logprobs=2, temperature=0)
    tokenized = client.post("/tokenize", json={"model": "tiny", "prompt": text}).json()
    assert tokenized["tokens"][0] == EOT_ID and tokenized["tokens"][1:] == lm.tokenizer.encode(text)
    assert tokenized["count"] == len(text) + 1
    plain = client.post("/tokenize", json={"prompt": text, "add_special_tokens": False}).json()["tokens"]
    assert plain == tokenized["tokens"][1:]

    as_ids = scored(client, prompt=plain, echo=True, max_tokens=5, logprobs=2, temperature=0)
    assert same_figures(as_ids, as_text)
    from_start = scored(client, prompt=tokenized["tokens"], echo=True, max_tokens=5, logprobs=2, temperature=0)
    assert from_start["text"] == EOT + as_text["text"]
    logprobs, expected = from_start["logprobs"], as_text["logprobs"]
    assert same_figures(logprobs["token_logprobs"], [None, *expected["token_logprobs"]])
    assert same_figures(logprobs["top_logprobs"], [None, *expected["top_logprobs"]])
    assert logprobs["text_offset"] == [0, *(offset + len(EOT) for offset in expected["text_offset"])]
    assert client.post("/detokenize", json={"tokens": tokenized["tokens"]}).json() == {"prompt": EOT + text}

    # A list of token-id prompts is several prompts, as a list of strings is.
    both = complete(client, prompt=[plain, lm.tokenizer.encode("the")], max_tokens=4, temperature=0)
    assert [c["text"] for c in both["choices"]] == [
        lm.generate(text, max_tokens=4, temperature=0),
        lm.generate("the", max_tokens=4, temperature=0),
    ]


def test_tokenizer_info_gives_what_lm_evaluation_harness_asks_for(client, lm):
    info = client.get("/tokenizer_info").json()
    assert info["eos_token"] == EOT and info["eos_token_id"] == EOT_ID
    assert info["vocab_size"] == lm.tokenizer.vocab_size


def test_tokens_that_are_not_whole_characters_are_written_as_bytes(client):
    """The tiny model's vocabulary has no 'é': its two UTF-8 bytes are two byte tokens, which share the
    character's offset."""
    choice = scored(client, prompt="aé b", echo=True, max_tokens=0, logprobs=0)
    assert choice["logprobs"]["tokens"] == ["a", "bytes:\\xc3", "bytes:\\xa9", " ", "b"]
    assert choice["logprobs"]["text_offset"] == [0, 1, 1, 2, 3]
    assert choice["text"] == "aé b"
    [ids] = [client.post("/tokenize", json={"prompt": "é", "add_special_tokens": False}).json()["tokens"]]
    from_ids = scored(client, prompt=ids, echo=True, max_tokens=0, logprobs=0)
    assert from_ids["text"] == "é" and from_ids["logprobs"]["text_offset"] == [0, 0]


def test_a_stream_with_logprobs_carries_each_chunks_tokens(client):
    request = {
        "model": "tiny",
        "prompt": ["the", "fox"],
        "echo": True,
        "max_tokens": 20,
        "logprobs": 2,
        "temperature": 1.0,
        "seed": 5,
    }
    whole = client.post("/v1/completions", json=request).json()["choices"]
    with client.stream("POST", "/v1/completions", json={**request, "stream": True}) as response:
        chunks = events(response)
    joined = [{"text": "", "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []} for _ in whole]
    for chunk in chunks:
        [choice] = chunk["choices"]
        part, logprobs = joined[choice["index"]], choice["logprobs"]
        assert len(logprobs["tokens"]) >= len(choice["text"])  # a char model: each character is a token
        part["text"] += choice["text"]
        for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            part[name] += logprobs[name]
    assert [j["text"] for j in joined] == [c["text"] for c in whole]
    assert same_figures([{k: v for k, v in j.items() if k != "text"} for j in joined], [c["logprobs"] for c in whole])
    first = next(c for c in chunks if c["choices"][0]["index"] == 0)["choices"][0]
    assert first["text"].startswith("the") and first["logprobs"]["tokens"][:3] == [
        "t",
        "h",
        "e",
    ]  # the echo comes first

    with client.stream("POST", "/v1/completions", json={**request, "logprobs": None, "stream": True}) as response:
        plain = events(response)
    assert plain[0]["choices"][0] == {
        "index": 0,
        "text": "the",
        "logprobs": None,
        "finish_reason": None,
    }  # echo without logprobs


def test_chat_logprobs_list_the_answers_tokens_with_the_most_likely_ones(client):
    body = {**CHAT, "max_tokens": 15, "temperature": 0, "logprobs": True, "top_logprobs": 4}
    response = client.post("/v1/chat/completions", json=body).json()
    [choice] = response["choices"]
    content = choice["logprobs"]["content"]
    assert "".join(entry["token"] for entry in content) == choice["message"]["content"] and len(content) == 15
    for entry in content:
        assert bytes(entry["bytes"]).decode() == entry["token"]
        assert len(entry["top_logprobs"]) == 4
        top = [t["logprob"] for t in entry["top_logprobs"]]
        assert top == sorted(top, reverse=True)
        assert entry["top_logprobs"][0]["token"] == entry["token"] and top[0] == entry["logprob"]  # greedy
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streamed:
        chunks = events(streamed)
    assert chunks[0]["choices"][0]["logprobs"] is None  # the role chunk
    assert same_figures([e for c in chunks[1:] for e in c["choices"][0]["logprobs"]["content"]], content)
    without = client.post("/v1/chat/completions", json={**body, "logprobs": False, "top_logprobs": None}).json()
    assert without["choices"][0]["logprobs"] is None and without["choices"][0]["message"] == choice["message"]
    just_chosen = client.post("/v1/chat/completions", json={**body, "top_logprobs": None}).json()
    assert [e["top_logprobs"] for e in just_chosen["choices"][0]["logprobs"]["content"]] == [[]] * 15


def checkpoint_with_turns(folder: Path, turns: TurnFormat) -> Path:
    """A tiny checkpoint whose config.json records a chat format (as a corpus card's [chat] table does)."""
    write_tiny_checkpoint(folder)
    config = json.loads((folder / "config.json").read_text())
    config["data"]["turns"] = {"user_prefix": turns.user_prefix, "bot_prefix": turns.bot_prefix}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def ask(client, model: str, text: str) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 30, "temperature": 0}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_answered_in(turns: TurnFormat, answer: dict, lm: TextGenerator, text: str) -> None:
    prompt = conversation_text([("user", text)], turns)
    assert answer["usage"]["prompt_tokens"] == len(lm.tokenizer.encode(prompt))
    assert answer["choices"][0]["message"]["content"] == lm.generate(
        prompt, max_tokens=30, temperature=0, stop=turns.stops()
    )


def test_chat_is_in_the_checkpoints_turn_format_unless_the_settings_give_one(tmp_path):
    lm = load(checkpoint_with_turns(tmp_path / "run", TURNS))
    for settings, turns in (
        (ServeSettings(model_name="tiny"), TURNS),
        (ServeSettings(model_name="tiny", turn_format=TurnFormat()), TurnFormat()),
    ):
        with (
            RunningServer(create_app(lm, settings), "127.0.0.1", 0) as server,
            httpx.Client(base_url=server.url, timeout=WAIT) as client,
        ):
            assert_answered_in(turns, ask(client, "tiny", "the dog"), lm, "the dog")


def test_serve_command_chats_in_the_checkpoints_turn_format_unless_prefixes_are_given(run_cli, tmp_path, monkeypatch):
    """Like `textlstm chat`: the checkpoint's prefixes, each replaced by the one given on the command line."""
    import textlstm.serve.server

    checkpoint = checkpoint_with_turns(tmp_path / "run", TURNS)
    answers = []

    class AnswerOneChatThenStop(RunningServer):
        def start(self, timeout: float = 60.0) -> RunningServer:
            super().start(timeout)
            with httpx.Client(base_url=self.url, timeout=WAIT) as client:
                wait_until_served(client)
                answers.append(ask(client, "run", "the dog"))
            self.stop()
            return self

    monkeypatch.setattr(textlstm.serve.server, "RunningServer", AnswerOneChatThenStop)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)  # the command's handlers would outlive it
    for flags, turns in (((), TURNS), (("--bot-prefix", "FOX. "), TurnFormat("Q. ", "FOX. "))):
        result = run_cli("serve", "--checkpoint", checkpoint, "--port", "0", *flags)
        assert result.code == 0, result.err
        assert_answered_in(turns, answers[-1], load(checkpoint), "the dog")


def test_a_kept_conversation_reads_only_what_is_new_and_an_evicted_one_is_rebuilt(lm):
    def turn(client, history, conversation_id=None) -> str:
        body = {"model": "tiny", "messages": history, "max_tokens": 20, "temperature": 0}
        if conversation_id:
            body["conversation_id"] = conversation_id
        return client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]

    with serving(lm, max_conversations=1) as client:
        history = [{"role": "user", "content": "the fox"}]
        first = turn(client, history, "a")
        history += [{"role": "assistant", "content": first}, {"role": "user", "content": "the dog"}]
        read_before = client.get("/metrics.json").json()["prompt_tokens_read"]
        second = turn(client, history, "a")
        metrics = client.get("/metrics.json").json()
        # The kept state had read the first answer but its last token: that token, "\nQ. the dog\nB. ".
        assert metrics["prompt_tokens_read"] - read_before == 1 + len("\nQ. the dog\nB. ")
        assert metrics["conversations_reused"] == 1 and metrics["kept_conversations"] == 1
        assert second == turn(client, history)  # the same answer as reading the whole conversation

        turn(client, [{"role": "user", "content": "lazy"}], "b")  # evicts "a" (room for one)
        history += [{"role": "assistant", "content": second}, {"role": "user", "content": "a cat"}]
        rebuilt = turn(client, history, "a")
        metrics = client.get("/metrics.json").json()
        assert metrics["conversations_evicted"] >= 1 and metrics["conversations_reused"] == 1
        assert rebuilt == turn(client, history)

        edited = [{"role": "user", "content": "the cat"}, *history[1:]]  # history changed: read again
        assert turn(client, edited, "a") == turn(client, edited)
        assert client.get("/metrics.json").json()["conversations_reused"] == 1


def test_the_official_openai_client_works_unmodified(client):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{client.url}/v1", api_key="unused", max_retries=0, timeout=WAIT)
    assert [m.id for m in api.models.list()] == ["tiny"]
    completion = api.completions.create(model="tiny", prompt="the", max_tokens=12, temperature=0)
    assert len(completion.choices[0].text) == 12 and completion.usage.completion_tokens == 12
    chat = api.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        seed=3,
        extra_body={"top_k": 5, "conversation_id": "x"},
    )
    assert chat.choices[0].message.role == "assistant" and len(chat.choices[0].message.content) == 10
    stream = api.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        seed=3,
        stream=True,
        extra_body={"top_k": 5},
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream) == chat.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="temperature"):
        api.completions.create(model="tiny", prompt="the", temperature=5)
    with pytest.raises(openai.NotFoundError):
        api.completions.create(model="gpt-4", prompt="the")


# --- bad input and faults ------------------------------------------------------------------------

GOOD = {"model": "tiny", "prompt": "the", "max_tokens": 3}
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
BAD_REQUESTS = [
    # (path, body: dict or raw bytes, status, words in the message)
    ("/v1/completions", b'{"model": "tiny", "prompt": ', 400, "not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, "JSON object"),
    ("/v1/completions", b"\xff\xfe", 400, "not valid JSON"),
    ("/v1/completions", {**GOOD, "colour": "red"}, 400, "unsupported parameter: colour"),
    ("/v1/completions", {**GOOD, "logprobs": 21}, 400, "logprobs"),
    ("/v1/completions", {**GOOD, "logprobs": -1}, 400, "logprobs"),
    ("/v1/completions", {**GOOD, "logprobs": True}, 400, "logprobs"),
    ("/v1/completions", {**GOOD, "echo": "yes"}, 400, "echo"),
    ("/v1/completions", {**GOOD, "max_tokens": 0}, 400, "use it with echo"),
    ("/v1/completions", {**GOOD, "prompt": [5, 10_000]}, 400, "token id 10000 is not in the vocabulary"),
    ("/v1/completions", {**GOOD, "prompt": [[5], [-1]]}, 400, "token id -1 is not in the vocabulary"),
    ("/v1/completions", {**GOOD, "prompt": [[5], []]}, 400, "at least one id"),
    ("/v1/completions", {**GOOD, "prompt": [5, "a"]}, 400, "list of lists of token ids"),
    ("/v1/chat/completions", {**CHAT, "top_logprobs": 2}, 400, "top_logprobs needs logprobs"),
    ("/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 21}, 400, "top_logprobs"),
    ("/tokenize", {"model": "tiny"}, 400, "missing required parameter: prompt"),
    ("/tokenize", {"model": "gpt-4", "prompt": "a"}, 404, "does not exist"),
    ("/detokenize", {"tokens": [99_999]}, 400, "token id 99999 is not in the vocabulary"),
    ("/v1/completions", {**GOOD, "max_tokens": -5}, 400, "max_tokens"),
    ("/v1/completions", {**GOOD, "max_tokens": 10**9}, 400, "max_tokens"),
    ("/v1/completions", {**GOOD, "temperature": 2.5}, 400, "temperature"),
    ("/v1/completions", {**GOOD, "temperature": "hot"}, 400, "temperature"),
    ("/v1/completions", b'{"model": "tiny", "prompt": "a", "temperature": NaN}', 400, "temperature"),
    ("/v1/completions", {**GOOD, "top_p": 1.5}, 400, "top_p"),
    ("/v1/completions", {**GOOD, "top_k": -1}, 400, "top_k"),
    (
        "/v1/completions",
        {**GOOD, "top_k": 2**63},
        400,
        "top_k",
    ),  # past the sampler's int64: it failed every sequence of the step
    ("/v1/completions", {**GOOD, "repetition_penalty": 0}, 400, "repetition_penalty"),
    ("/v1/completions", {**GOOD, "n": 0}, 400, "n"),
    ("/v1/completions", {**GOOD, "stop": ""}, 400, "stop"),
    ("/v1/completions", {**GOOD, "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
    ("/v1/completions", {**GOOD, "prompt": 5}, 400, "prompt"),
    ("/v1/completions", {**GOOD, "prompt": "\ud800"}, 400, "surrogate"),
    ("/v1/completions", {"prompt": "the"}, 400, "missing required parameter: model"),
    ("/v1/completions", {**GOOD, "model": "gpt-4"}, 404, "does not exist"),
    ("/v1/completions", {**GOOD, "prompt": "x" * 10_000_000}, 413, "over the limit"),
    ("/v1/chat/completions", {**CHAT, "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ("/v1/chat/completions", {**CHAT, "messages": [{"role": "assistant", "content": "hi"}]}, 400, "last message"),
    ("/v1/chat/completions", {**CHAT, "conversation_id": "c", "n": 2}, 400, "n = 1"),
    ("/v1/nothing", GOOD, 404, "Not Found"),
]


@pytest.mark.parametrize(
    "path, body, status, words", BAD_REQUESTS, ids=[f"{i}-{r[2]}" for i, r in enumerate(BAD_REQUESTS)]
)
def test_bad_requests_get_an_openai_error_and_the_server_goes_on(client, path, body, status, words):
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"]
    assert set(error) == {"message", "type", "param", "code"}
    assert complete(client, **{k: v for k, v in GOOD.items() if k != "model"})["choices"][0]["text"]


def test_a_long_prompt_is_answered_while_another_client_streams(client, lm):
    prompt = "the quick brown fox jumps over the lazy dog. " * 4500  # 200 KB
    with client.stream("POST", "/v1/completions", json={**GOOD, "max_tokens": 16_000, "stream": True}) as streaming:
        lines = streaming.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        answer = complete(client, prompt=prompt, max_tokens=5, temperature=0)
        assert next(line for line in lines if line.startswith("data: "))  # the stream still flows
    assert answer["choices"][0]["text"] == lm.generate(prompt, max_tokens=5, temperature=0)
    assert answer["usage"]["prompt_tokens"] == len(prompt)
    wait_until_idle(client)


def test_a_request_whose_step_fails_gets_an_error_and_the_others_stream_on(client, monkeypatch):
    import textlstm.serve.engine as engine_module

    pick_from = engine_module.filtered_scores

    def filtered_scores_failing_on_top_k_7(logits, settings, seen=None):
        if bool((settings.top_k == 7).any()):
            raise RuntimeError("out of memory (as the test makes it)")
        return pick_from(logits, settings, seen)

    monkeypatch.setattr(engine_module, "filtered_scores", filtered_scores_failing_on_top_k_7)
    long = {**GOOD, "max_tokens": 16_000, "stream": True, "temperature": 0}
    with (
        client.stream("POST", "/v1/completions", json=long) as one,
        client.stream("POST", "/v1/completions", json={**long, "prompt": "over"}) as two,
    ):
        streams = [one.iter_lines(), two.iter_lines()]
        for lines in streams:
            assert next(line for line in lines if line.startswith("data: "))
        failed = client.post("/v1/completions", json={**GOOD, "top_k": 7, "temperature": 0.8})
        rest = [[line.removeprefix("data: ") for line in lines if line.startswith("data: ")] for lines in streams]
    assert failed.status_code == 500, failed.text
    error = failed.json()["error"]
    assert error["type"] == "server_error" and "out of memory (as the test makes it)" in error["message"]
    for data in rest:
        assert data[-1] == "[DONE]" and json.loads(data[-2])["choices"][0]["finish_reason"] == "length"
    assert wait_until_idle(client)["sequences"] == 0


def test_long_token_id_prompts_and_detokenize_are_decoded_off_the_event_loop(client, lm, monkeypatch):
    """While a long token-id prompt (or /detokenize) is checked and decoded, here held up inside the
    decoding, the server answers other clients."""
    from textlstm.generation.decoding import TextDecoder

    ids = lm.encode("the quick brown fox jumps over the lazy dog. ") * 300  # 13,500 ids
    entered, release = threading.Event(), threading.Event()

    def held(decode):
        def decode_when_released(*args):
            entered.set()
            release.wait(WAIT)
            return decode(*args)

        return decode_when_released

    monkeypatch.setattr(lm.tokenizer, "decode", held(lm.tokenizer.decode))
    monkeypatch.setattr(TextDecoder, "push", held(TextDecoder.push))
    echoed = {**GOOD, "prompt": ids, "echo": True, "max_tokens": 1}
    for path, body in (("/detokenize", {"tokens": ids}), ("/v1/completions", echoed)):
        entered.clear()
        release.clear()
        answers = []
        sender = threading.Thread(
            target=lambda answers=answers, path=path, body=body: answers.append(client.post(path, json=body))
        )
        sender.start()
        try:
            assert entered.wait(WAIT)
            with httpx.Client(base_url=client.url, timeout=10) as other:
                assert other.get("/health").status_code == 200
        finally:
            release.set()
            sender.join(WAIT)
        assert answers[0].status_code == 200, answers[0].text
        text = answers[0].json()["prompt"] if path == "/detokenize" else answers[0].json()["choices"][0]["text"]
        assert text.startswith("the quick brown fox jumps over the lazy dog. " * 300)


def test_a_client_that_leaves_mid_stream_leaves_no_sequence_behind(client):
    for _ in range(3):
        with client.stream("POST", "/v1/completions", json={**GOOD, "max_tokens": 16_000, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break  # leave after the first event
    # A non-streaming request whose client gives up once its sequence runs.
    host, port = client.url.removeprefix("http://").split(":")
    body = json.dumps({**GOOD, "max_tokens": 16_000}).encode()
    with socket.create_connection((host, int(port)), timeout=WAIT) as raw:
        raw.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
            % (host.encode(), port.encode())
        )
        raw.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        for _ in range(WAIT * 20):
            if client.get("/metrics.json").json()["sequences"] > 0:
                break
            threading.Event().wait(0.05)
    metrics = wait_until_idle(client)
    assert metrics["cancelled"] >= 4


def test_a_thousand_requests_at_once(lm):
    async def hammer(url: str, count: int) -> list:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=WAIT * 2) as client:

            async def one(i: int):
                body = {**GOOD, "max_tokens": 4, "seed": i, "stream": i % 2 == 0}
                response = await client.post("/v1/completions", json=body)
                return response.status_code, response.text

            return await asyncio.gather(*(one(i) for i in range(count)))

    with serving(lm) as client:
        results = asyncio.run(hammer(client.url, 1000))
        assert [status for status, _ in results] == [200] * 1000
        assert all(text.endswith("data: [DONE]\n\n") for _, text in results[::2])
        assert wait_until_idle(client)["finished"] == 1000

    with serving(lm, max_sequences=8) as client:  # over its limit, a server turns requests away
        results = asyncio.run(hammer(client.url, 100))
        statuses = {status for status, _ in results}
        assert statuses == {200, 429}
        busy = next(json.loads(text) for status, text in results if status == 429)
        assert busy["error"]["type"] == "rate_limit_error"
        wait_until_idle(client)


# --- the command ---------------------------------------------------------------------------------


def test_serve_command_stops_cleanly_on_sigterm_and_sigint(tmp_path):
    """A stop ends an open stream with an error event and exits 0 with no traceback and no error logged,
    though another client is still sending its request body (its connection is closed a few seconds
    later, or at once on a second Ctrl-C)."""
    checkpoint = write_tiny_checkpoint(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for signum, again in ((signal.SIGTERM, False), (signal.SIGINT, True)):
        process = subprocess.Popen(
            [sys.executable, "-m", "textlstm", "serve", "--checkpoint", str(checkpoint), "--port", "0"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            printed = [process.stderr.readline()]
            url = re.search(r"on (http://\S+) ", printed[0]).group(1)
            address = url.removeprefix("http://")
            host, port = address.split(":")
            slow = socket.create_connection((host, int(port)), timeout=WAIT)
            with httpx.Client(base_url=url, timeout=WAIT) as client, slow:
                wait_until_served(client)
                slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\n" % address.encode())
                slow.sendall(b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model": ')  # no more
                long = {"model": "run", "prompt": "the", "max_tokens": 16_000, "stream": True}
                with client.stream("POST", "/v1/completions", json=long) as response:
                    lines = response.iter_lines()
                    assert next(line for line in lines if line.startswith("data: "))
                    process.send_signal(signum)
                    rest = [line for line in lines if line.startswith("data: ")]
                assert "shutting down" in rest[-1]  # the stream ended with an error event, not a cut connection
                if again:  # while the server waits for the slow client
                    while "stopping" not in printed[-1]:
                        printed.append(process.stderr.readline())
                    process.send_signal(signum)
                assert process.wait(WAIT) == 0
            err = "".join(printed) + process.stderr.read()
            assert "stopped; 0 sequences active" in err
            assert "Traceback" not in err and "ERROR" not in err, err
        finally:
            process.kill()
            process.wait()


def test_serve_command_errors_are_one_line(run_cli, tmp_path, monkeypatch):
    checkpoint = write_tiny_checkpoint(tmp_path / "run")
    with RunningServer(create_app(load(checkpoint), ServeSettings(model_name="x")), "127.0.0.1", 0) as taken:
        result = run_cli("serve", "--checkpoint", checkpoint, "--port", taken.port)
    assert (
        result.code == 1
        and result.err.startswith("error: cannot listen on 127.0.0.1:")
        and "Traceback" not in result.err
    )

    result = run_cli("serve", "--checkpoint", tmp_path / "missing", "--port", "0")  # found missing once it listens
    assert (
        result.code == 1
        and result.err.splitlines()[-1].startswith("error: no such checkpoint")
        and "Traceback" not in result.err
    )

    for module in ("fastapi", "textlstm.serve.app", "textlstm.serve.server"):
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    result = run_cli("serve", "--checkpoint", checkpoint)
    assert result.code == 1 and 'pip install "textlstm[serve]"' in result.err
