"""`textlstm serve` on a network, over real HTTP on 127.0.0.1: API keys, /health while the model
loads, who may send requests (content type, Origin, Host), kept conversations that belong to a key,
the caps on one request, the deadline, the warning without a key, and /metrics for Prometheus."""

from __future__ import annotations

import json
import logging
import signal
import threading
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import textlstm.serve.security  # noqa: E402
from conftest import write_tiny_checkpoint  # noqa: E402
from textlstm.errors import TextlstmError  # noqa: E402
from textlstm.generation.generator import TextGenerator, load  # noqa: E402
from textlstm.serve.app import ServeSettings, create_app, create_loading_app  # noqa: E402
from textlstm.serve.security import AccessSettings, APIKeys, HostNames  # noqa: E402
from textlstm.serve.server import RunningServer  # noqa: E402
from textlstm.serve.state import server_state  # noqa: E402
from textlstm.turns import TurnFormat  # noqa: E402

WAIT = 60  # seconds: a bound on every wait, never reached when things work
TURNS = TurnFormat("Q. ", "B. ")
KEYS = ("key-one", "key-two")
LONG = {"model": "tiny", "prompt": "the", "max_tokens": 16_000}  # runs far longer than any test waits for it


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> TextGenerator:
    return load(write_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny"))


@contextmanager
def serving(lm: TextGenerator, access: AccessSettings | None = None, key: str | None = None, **settings):
    """A client of a server on 127.0.0.1 (port 0), sending `key` as its Bearer key if given."""
    app = create_app(lm, ServeSettings(model_name="tiny", turn_format=TURNS, **settings), access)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with (
        RunningServer(app, "127.0.0.1", 0) as server,
        httpx.Client(base_url=server.url, timeout=WAIT, headers=headers) as client,
    ):
        client.app, client.url = app, server.url
        yield client


@pytest.fixture(scope="module")
def keyed(lm):
    with serving(lm, AccessSettings(api_keys=KEYS)) as client:
        yield client


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def assert_openai_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"]
    return error


def wait_until(check, what: str):
    for _ in range(WAIT * 20):
        value = check()
        if value:
            return value
        threading.Event().wait(0.05)
    raise AssertionError(f"never {what}")


def wait_until_idle(client) -> dict:
    return wait_until(lambda: (m := client.get("/metrics.json").json())["sequences"] == 0 and m, "idle")


GOOD = {"model": "tiny", "prompt": "the", "max_tokens": 3}


# --- API keys ------------------------------------------------------------------------------------


def test_with_keys_set_every_api_route_needs_one_of_them(keyed):
    routes = [
        ("POST", "/v1/completions", GOOD),
        ("GET", "/v1/models", None),
        ("POST", "/tokenize", {"prompt": "the"}),
        ("GET", "/tokenizer_info", None),
        ("POST", "/v1/nothing", GOOD),
    ]
    for method, path, body in routes:
        for headers in ({}, bearer("wrong"), {"Authorization": "key-one"}, {"Authorization": "Basic key-one"}):
            response = keyed.request(method, path, json=body, headers=headers)
            error = assert_openai_error(response, 401, "invalid_api_key")
            assert error["type"] == "invalid_request_error" and error["param"] is None
            assert response.headers["www-authenticate"] == "Bearer"
    for key in KEYS:
        assert keyed.post("/v1/completions", json=GOOD, headers=bearer(key)).status_code == 200
        assert keyed.post("/tokenize", json={"prompt": "the"}, headers=bearer(key)).status_code == 200
    assert keyed.post("/v1/nothing", json=GOOD, headers=bearer("key-two")).status_code == 404
    # Open without a key: the page (it asks for the key), /health, /metrics.
    for path in ("/", "/health", "/metrics", "/metrics.json"):
        assert keyed.get(path).status_code == 200, path


def test_the_official_openai_client_sends_its_key(keyed):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="key-two", max_retries=0, timeout=WAIT)
    assert api.completions.create(model="tiny", prompt="the", max_tokens=4).usage.completion_tokens == 4
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="key-three", max_retries=0, timeout=WAIT).models.list()


def test_a_key_is_compared_with_every_key_whichever_matches(monkeypatch):
    """No early return on the first match: the time taken does not say which key it was."""
    compared = []
    real = textlstm.serve.security.hmac.compare_digest
    monkeypatch.setattr(textlstm.serve.security.hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    keys = APIKeys(("a", "b", "c"))
    assert [keys.number_of(k) for k in ("a", "c", "d")] == [0, 2, None]
    assert len(compared) == 9


def test_a_key_is_never_logged(lm, caplog):
    caplog.set_level(logging.DEBUG)
    with serving(lm, AccessSettings(api_keys=("sesame-secret",))) as client:
        refused = client.post("/v1/completions", json=GOOD, headers=bearer("sesame-wrong"))
        served = client.post("/v1/completions", json=GOOD, headers=bearer("sesame-secret"))
    assert (refused.status_code, served.status_code) == (401, 200)
    assert "sesame" not in caplog.text and "sesame" not in refused.text


# --- listening before the model is loaded ----------------------------------------------------------


def test_health_is_503_while_the_model_loads_then_200(lm):
    loaded = threading.Event()

    def slow_load():
        assert loaded.wait(WAIT)
        return lm, ServeSettings(model_name="tiny")

    app = create_loading_app(slow_load, AccessSettings(api_keys=KEYS))
    with RunningServer(app, "127.0.0.1", 0) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        health = client.get("/health")
        assert (health.status_code, health.json()) == (503, {"status": "loading"})  # no key needed
        assert_openai_error(
            client.post("/v1/completions", json=GOOD, headers=bearer("key-one")), 503, "model_not_loaded"
        )
        assert client.post("/v1/completions", json=GOOD).status_code == 401  # the key is checked all the same
        loaded.set()
        wait_until(lambda: client.get("/health").status_code == 200, "served")
        assert client.get("/health").json() == {"status": "ok"}
        assert (
            client.post("/v1/completions", json=GOOD, headers=bearer("key-one")).json()["usage"]["completion_tokens"]
            == 3
        )


def test_a_load_that_fails_leaves_health_at_503_and_the_error_for_the_command():
    def failing_load():
        raise TextlstmError("no such checkpoint folder: nowhere")

    app = create_loading_app(failing_load)
    with RunningServer(app, "127.0.0.1", 0) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        assert server_state(app).loaded.wait(WAIT)
        assert str(server_state(app).load_error) == "no such checkpoint folder: nowhere"
        assert (client.get("/health").status_code, client.get("/health").json()) == (503, {"status": "failed"})
        assert (
            "failed to load"
            in assert_openai_error(client.post("/v1/completions", json=GOOD), 503, "model_not_loaded")["message"]
        )


# --- who may send requests -----------------------------------------------------------------------


def test_a_post_body_must_be_json(lm):
    with serving(lm) as client:
        body = json.dumps(GOOD)
        for content_type in (
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            None,
        ):
            headers = {"Content-Type": content_type} if content_type else {}
            assert_openai_error(
                client.post("/v1/completions", content=body, headers=headers), 415, "unsupported_media_type"
            )
        for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
            assert (
                client.post("/v1/completions", content=body, headers={"Content-Type": content_type}).status_code == 200
            )


def test_pages_on_other_sites_are_refused_unless_allowed(lm):
    allowed = "https://app.example"
    with serving(lm, AccessSettings(cors_origins=(allowed,))) as client:
        own = client.url  # the page at / sends this Origin
        assert client.post("/v1/completions", json=GOOD, headers={"Origin": own}).status_code == 200
        for origin in ("http://evil.example", "null", "http://127.0.0.1:1"):
            assert_openai_error(
                client.post("/v1/completions", json=GOOD, headers={"Origin": origin}), 403, "origin_not_allowed"
            )
            preflight = client.options(
                "/v1/completions", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
            )
            assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers

        preflight = client.options(
            "/v1/completions",
            headers={
                "Origin": allowed,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert {"authorization", "content-type"} <= {
            h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
        }
        response = client.post("/v1/completions", json=GOOD, headers={"Origin": allowed})
        assert response.status_code == 200 and response.headers["access-control-allow-origin"] == allowed

    with serving(lm) as client:  # no --cors-origin: no other site
        assert client.post("/v1/completions", json=GOOD, headers={"Origin": allowed}).status_code == 403


def test_a_request_for_another_host_name_is_refused(lm):
    """DNS rebinding: evil.example pointed at 127.0.0.1 is the same site as evil.example to a browser."""
    with serving(lm, AccessSettings(allowed_hosts=("textlstm.lan",))) as client:
        port = client.url.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
            assert_openai_error(client.get("/v1/models", headers={"Host": host}), 400, "host_not_allowed")
            assert client.post("/v1/completions", json=GOOD, headers={"Host": host}).status_code == 400
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", f"textlstm.lan:{port}"):
            assert client.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_the_host_names_each_address_answers_to():
    loopback, everywhere, one = HostNames("127.0.0.1"), HostNames("0.0.0.0", ("box.lan",)), HostNames("192.168.1.5")
    assert all(loopback.answers(h) for h in ("127.0.0.1:8000", "localhost", "[::1]:80"))
    assert not any(loopback.answers(h) for h in ("192.168.1.5:8000", "box.lan", "evil.example:8000"))
    assert all(
        everywhere.answers(h)
        for h in ("192.168.1.5:8000", "[fe80::1]:8000", "10.0.0.1", "localhost:8000", "box.lan:8000")
    )
    assert not any(everywhere.answers(h) for h in ("evil.example:8000", "box.lan.evil.example"))
    assert one.answers("192.168.1.5:8000") and not one.answers("localhost:8000")
    assert HostNames("127.0.0.1", ("*",)).answers("anything.example")


# --- kept conversations belong to a key ------------------------------------------------------------


def chat(client, key: str, history: list, conversation_id: str) -> str:
    body = {
        "model": "tiny",
        "messages": history,
        "max_tokens": 20,
        "temperature": 0,
        "conversation_id": conversation_id,
    }
    response = client.post("/v1/chat/completions", json=body, headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_a_kept_conversation_is_its_keys_only_and_another_key_cannot_evict_it(lm):
    with serving(lm, AccessSettings(api_keys=KEYS), max_conversations=1) as client:
        history = [{"role": "user", "content": "the fox"}]
        answer = chat(client, "key-one", history, "c")
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "the dog"}]
        # The other key, the same id: it cannot read key-one's state, even with key-one's own messages,
        # and neither its different messages nor its own kept conversations (room for one each) evict it.
        chat(client, "key-two", history, "c")
        chat(client, "key-two", [{"role": "user", "content": "lazy"}], "c")
        chat(client, "key-two", [{"role": "user", "content": "brown"}], "other")
        figures = client.get("/metrics.json").json()
        assert figures["conversations_reused"] == 0 and figures["kept_conversations"] == 2
        chat(client, "key-one", history, "c")
        assert client.get("/metrics.json").json()["conversations_reused"] == 1  # still there for its owner


def test_past_the_total_of_kept_conversations_the_least_recently_used_of_any_key_goes(lm):
    with serving(lm, AccessSettings(api_keys=KEYS), max_conversations_total=1) as client:
        history = [{"role": "user", "content": "the fox"}]
        answer = chat(client, "key-one", history, "c")
        chat(client, "key-two", [{"role": "user", "content": "lazy"}], "c")
        figures = client.get("/metrics.json").json()
        assert figures["kept_conversations"] == 1 and figures["conversations_evicted"] == 1
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "the dog"}]
        chat(client, "key-one", history, "c")  # read again from its messages
        assert client.get("/metrics.json").json()["conversations_reused"] == 0


def test_a_request_that_does_not_continue_a_kept_state_leaves_it_kept(lm):
    with serving(lm) as client:
        history = [{"role": "user", "content": "the fox"}]
        answer = chat(client, "unused", history, "c")
        store = server_state(client.app).model.conversations
        assert store.find(None, "c", "something else") is None and len(store) == 1
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "the dog"}]
        chat(client, "unused", history, "c")
        assert client.get("/metrics.json").json()["conversations_reused"] == 1


def test_a_refused_or_failed_request_leaves_its_conversation_kept(lm, monkeypatch):
    """Refused (top_logprobs, a size cap, the key's quota, a busy engine) or failed in the engine, a
    turn leaves the conversation's state kept: the next turn still reads only what is new."""
    import textlstm.serve.engine as engine_module

    pick_from = engine_module.filtered_scores

    def filtered_scores_failing_on_top_k_7(logits, settings, seen=None):
        if bool((settings.top_k == 7).any()):
            raise RuntimeError("out of memory (as the test makes it)")
        return pick_from(logits, settings, seen)

    monkeypatch.setattr(engine_module, "filtered_scores", filtered_scores_failing_on_top_k_7)
    limits = {"max_sequences": 1, "max_sequences_per_key": 1, "max_request_tokens": LONG["max_tokens"]}
    with serving(lm, AccessSettings(api_keys=KEYS), **limits) as client:
        history = [{"role": "user", "content": "the fox"}]
        answer = chat(client, "key-one", history, "c")
        history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "the dog"}]
        turn = {"model": "tiny", "messages": history, "max_tokens": 20, "temperature": 0, "conversation_id": "c"}

        def refused(body: dict, status: int, code: str | None) -> None:
            response = client.post("/v1/chat/completions", json=body, headers=bearer("key-one"))
            assert response.status_code == status and response.json()["error"]["code"] == code, response.text
            assert client.get("/metrics.json").json()["kept_conversations"] == 1

        refused({**turn, "top_logprobs": 2}, 400, None)  # top_logprobs without logprobs
        refused({**turn, "max_tokens": LONG["max_tokens"] + 1}, 400, "request_too_large")
        refused({**turn, "top_k": 7, "temperature": 0.8}, 500, None)  # admitted, then fails in the engine
        for holder, code in (("key-one", "too_many_sequences"), ("key-two", None)):  # the key's quota, the engine's
            stream = {**LONG, "stream": True}
            with client.stream("POST", "/v1/completions", json=stream, headers=bearer(holder)) as running:
                lines = running.iter_lines()
                next(line for line in lines if line.startswith("data: "))
                refused(turn, 429, code)
            wait_until_idle(client)
        read_before = client.get("/metrics.json").json()["prompt_tokens_read"]
        assert chat(client, "key-one", history, "c") == chat(client, "key-two", history, "fresh")
        read = client.get("/metrics.json").json()["prompt_tokens_read"] - read_before
        whole = 1 + len(conversation_text_of(history))
        # The kept state had read the first answer but its last token: that token, "\nQ. the dog\nB. ".
        assert read - whole == 1 + len("\nQ. the dog\nB. ")


def conversation_text_of(history: list) -> str:
    return TURNS.conversation([(m["role"], m["content"]) for m in history])


# --- what one request may ask --------------------------------------------------------------------


def test_a_request_may_generate_and_read_only_so_much(lm):
    with serving(lm, max_request_tokens=100, max_prompt_tokens=50) as client:
        too_many = client.post(
            "/v1/completions", json={**GOOD, "prompt": ["a", "b", "c"], "n": 2, "max_tokens": 17}
        )  # 102
        assert "--max-request-tokens" in assert_openai_error(too_many, 400, "request_too_large")["message"]
        assert (
            client.post(
                "/v1/completions", json={**GOOD, "prompt": ["a", "b", "c"], "n": 2, "max_tokens": 16}
            ).status_code
            == 200
        )
        too_long = client.post(
            "/v1/completions", json={**GOOD, "prompt": "x" * 50}
        )  # 51 read with the start-of-text token
        assert "--max-prompt-tokens" in assert_openai_error(too_long, 400, "request_too_large")["message"]
        assert client.post("/v1/completions", json={**GOOD, "prompt": "x" * 49}).status_code == 200


def test_the_default_caps_admit_lm_evaluation_harness_batches(lm):
    """64 prompts a request: scored (echo, max_tokens 0), or continued for 256 tokens each."""
    prompts = [f"the quick brown fox {i} " * 20 for i in range(64)]
    with serving(lm) as client:
        scored = client.post(
            "/v1/completions", json={"model": "tiny", "prompt": prompts, "echo": True, "max_tokens": 0, "logprobs": 0}
        )
        assert scored.status_code == 200, scored.text
        assert [c["text"] for c in scored.json()["choices"]] == prompts
        continued = client.post(
            "/v1/completions", json={"model": "tiny", "prompt": prompts, "max_tokens": 256, "temperature": 0}
        )
        assert continued.status_code == 200, continued.text
        assert continued.json()["usage"]["completion_tokens"] == 64 * 256


def test_each_key_may_have_only_so_many_sequences_at_once(lm):
    with serving(lm, AccessSettings(api_keys=KEYS), max_sequences_per_key=2) as client:
        with client.stream(
            "POST", "/v1/completions", json={**LONG, "n": 2, "stream": True}, headers=bearer("key-one")
        ) as running:
            lines = running.iter_lines()  # held: a dropped generator would close the connection
            next(line for line in lines if line.startswith("data: "))
            busy = client.post("/v1/completions", json=GOOD, headers=bearer("key-one"))
            error = assert_openai_error(busy, 429, "too_many_sequences")
            assert error["type"] == "rate_limit_error" and "--max-sequences-per-key" in error["message"]
            assert client.post("/v1/completions", json={**GOOD, "n": 2}, headers=bearer("key-two")).status_code == 200
        wait_until(
            lambda: client.post("/v1/completions", json=GOOD, headers=bearer("key-one")).status_code == 200,
            "given back",
        )


def test_a_request_past_its_deadline_is_stopped_and_answered_with_an_error(lm):
    with serving(lm, request_timeout=0.2) as client:
        late = client.post("/v1/completions", json={**LONG, "n": 2})
        assert "--request-timeout" in assert_openai_error(late, 504, "request_timeout")["message"]
        with client.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as streamed:
            last = [line for line in streamed.iter_lines() if line.startswith("data: ")][-1]
        assert "--request-timeout" in json.loads(last.removeprefix("data: "))["error"]["message"]
        assert wait_until_idle(client)["cancelled"] == 3


def test_a_request_running_when_the_engine_stops_gets_503_and_one_that_fails_500(lm, monkeypatch):
    with serving(lm) as client:
        answers = []
        waiting = threading.Thread(target=lambda: answers.append(client.post("/v1/completions", json=LONG)))
        waiting.start()
        wait_until(lambda: client.get("/metrics.json").json()["generating"] == 1, "generating")
        server_state(client.app).engine.shutdown()
        waiting.join(WAIT)
        error = assert_openai_error(answers[0], 503, None)
        assert error["type"] == "server_error" and "shutting down" in error["message"]

    import textlstm.serve.engine as engine_module

    def failing_with_those_words(*args):
        raise RuntimeError("not shutting down: failing")

    monkeypatch.setattr(engine_module, "filtered_scores", failing_with_those_words)
    with serving(lm) as client:
        error = assert_openai_error(client.post("/v1/completions", json=GOOD), 500, None)
        assert error["type"] == "server_error" and "not shutting down: failing" in error["message"]


# --- the command ---------------------------------------------------------------------------------


def run_serve_once(run_cli, monkeypatch, checkpoint, *flags, key: str | None = None):
    """`textlstm serve` with a server that waits until it serves, asks /v1/models with `key`, and
    stops; it listens on 127.0.0.1 whatever --host says. Returns (result, status of that request)."""
    import textlstm.serve.server

    statuses = []

    class AskOnceThenStop(RunningServer):
        def __init__(self, app, host, port, **kwargs):
            super().__init__(app, "127.0.0.1", 0, **kwargs)

        def start(self, timeout: float = 60.0) -> RunningServer:
            super().start(timeout)
            with httpx.Client(base_url=self.url, timeout=WAIT) as client:
                wait_until(lambda: client.get("/health").status_code == 200, "served")
                statuses.append(client.get("/v1/models", headers=bearer(key) if key else {}).status_code)
            self.stop()
            return self

    monkeypatch.setattr(textlstm.serve.server, "RunningServer", AskOnceThenStop)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)  # the command's handlers would outlive it
    result = run_cli("serve", "--checkpoint", checkpoint, *flags)
    assert result.code == 0, result.err
    return result, statuses[0]


def test_the_command_warns_when_it_listens_beyond_this_machine_without_a_key(run_cli, monkeypatch, tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "run")
    result, status = run_serve_once(run_cli, monkeypatch, checkpoint, "--host", "0.0.0.0")
    assert status == 200 and "warning: listening on 0.0.0.0 without an API key" in result.err
    result, _ = run_serve_once(run_cli, monkeypatch, checkpoint)  # 127.0.0.1
    assert "warning" not in result.err


def test_the_command_takes_keys_from_the_option_the_environment_and_a_file(run_cli, monkeypatch, tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "run")
    (tmp_path / "keys.txt").write_text("file-key-1\n\n  file-key-2  \n")
    assert run_serve_once(run_cli, monkeypatch, checkpoint, "--api-key", "given")[1] == 401
    assert run_serve_once(run_cli, monkeypatch, checkpoint, "--api-key", "given", key="given")[1] == 200
    monkeypatch.setenv("TEXTLSTM_API_KEY", "from-env")
    result, status = run_serve_once(run_cli, monkeypatch, checkpoint, "--host", "0.0.0.0", key="from-env")
    assert status == 200 and "warning" not in result.err and "from-env" not in result.err
    monkeypatch.delenv("TEXTLSTM_API_KEY")
    for key in ("file-key-1", "file-key-2"):
        assert (
            run_serve_once(run_cli, monkeypatch, checkpoint, "--api-key-file", tmp_path / "keys.txt", key=key)[1] == 200
        )

    (tmp_path / "empty.txt").write_text("\n")
    for flags in (
        ("--api-key-file", tmp_path / "empty.txt"),
        ("--api-key-file", tmp_path / "missing.txt"),
        ("--cors-origin", "app.example/path"),
    ):
        result = run_cli("serve", "--checkpoint", checkpoint, "--port", "0", *flags)
        assert result.code == 1 and result.err.startswith("error:") and "Traceback" not in result.err


# --- /metrics ------------------------------------------------------------------------------------


def prometheus(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=")
    return {
        sample.name: sample for family in text_string_to_metric_families(response.text) for sample in family.samples
    }


def test_metrics_are_in_prometheus_text_format_from_each_apps_own_registry(lm):
    with serving(lm) as first, serving(lm) as second:
        first.post("/v1/completions", json={**GOOD, "max_tokens": 7})
        wait_until_idle(first)
        figures, samples = first.get("/metrics.json").json(), prometheus(first)
        assert samples["textlstm_tokens_generated_total"].value == figures["tokens_generated"] == 7
        assert samples["textlstm_sequences"].value == 0
        assert samples["textlstm_model_info"].labels == {"model": "tiny"}
        assert "textlstm_kept_conversations" in samples and "textlstm_conversations_reused_total" in samples
        assert prometheus(second)["textlstm_tokens_generated_total"].value == 0  # its own figures
