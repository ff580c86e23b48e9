"""POST /v1/inspect over real HTTP: the values are `textlstm.record_states`'s and the found cells
`textlstm.find_cells`'s on the same text, the API key and the text-length cap apply, and the server
goes on answering while an inspection runs. Skipped without the serve extra."""

from __future__ import annotations

import base64
import threading
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import textlstm  # noqa: E402
from conftest import write_tiny_checkpoint  # noqa: E402
from textlstm.generation.generator import load  # noqa: E402
from textlstm.inspection import inspector  # noqa: E402
from textlstm.serve.app import ServeSettings, create_app  # noqa: E402
from textlstm.serve.security import AccessSettings  # noqa: E402
from textlstm.serve.server import RunningServer  # noqa: E402
from textlstm.turns import TurnFormat  # noqa: E402

WAIT = 60  # seconds: a bound on every wait, never reached when things work
# é is two byte tokens for the tiny char model: the second is an empty token at the same place
TEXT = 'He said "the FOX (jumps [over])" é\n  the lazy dog.'


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("inspect") / "tiny")


@contextmanager
def serving(checkpoint, access: AccessSettings | None = None, **settings):
    app = create_app(load(checkpoint), ServeSettings(model_name="tiny", turn_format=TurnFormat(), **settings), access)
    with RunningServer(app, "127.0.0.1", 0) as server, httpx.Client(base_url=server.url, timeout=WAIT) as client:
        yield client


def decoded(layer: dict, name: str, cells: int) -> np.ndarray:
    """[tokens, cells] values of one series of one layer of the answer, as the docs say to read them."""
    units = np.frombuffer(base64.b64decode(layer[name]), dtype=np.uint8).reshape(-1, cells) / 255
    if name == "hidden":
        return units * 2 - 1
    if name == "cell":
        return (units * 2 - 1) * np.array(layer["cell_scale"])
    return units


def test_the_answer_holds_record_states_values_and_find_cells_cells(checkpoint):
    with serving(checkpoint) as client:
        response = client.post("/v1/inspect", json={"model": "tiny", "text": TEXT})
    assert response.status_code == 200, response.text
    answer = response.json()
    recording = textlstm.record_states(TEXT, checkpoint=checkpoint)
    found = textlstm.find_cells(recording)

    assert answer["object"] == "inspection" and answer["model"] == "tiny"
    assert [token["text"] for token in answer["tokens"]] == recording.pieces
    assert [token["start"] for token in answer["tokens"]] == recording.starts.tolist()
    assert [token["end"] for token in answer["tokens"]] == recording.ends.tolist()
    assert "".join(TEXT[t["start"] : t["end"]] for t in answer["tokens"]) == TEXT
    assert "" in recording.pieces  # é's second byte token: the layout is tested where it matters
    assert answer["characters"] == len(TEXT)
    assert answer["bits_per_char"] == pytest.approx(recording.bits_per_char, rel=1e-5)

    layers, tokens, cells = recording.cell.shape
    assert answer["cells_per_layer"] == cells and len(answer["layers"]) == layers == 2
    for layer, values in enumerate(answer["layers"]):
        for name, recorded in recording.gates().items():
            scale = np.abs(recorded[layer]).max(axis=0) if name == "cell" else 1.0
            shown = decoded(values, name, cells)
            assert shown.shape == (tokens, cells)
            assert np.all(np.abs(shown - recorded[layer]) <= scale / 255 + 1e-6), (layer, name)
        assert values["cell_scale"] == pytest.approx(np.abs(recording.cell[layer]).max(axis=0).tolist(), rel=1e-6)

    assert [(c["layer"], c["index"], c["feature"]) for c in answer["cells"]] == [
        (c.layer, c.index, c.feature) for c in found
    ]
    for shown, cell in zip(answer["cells"], found):
        assert shown["correlation"] == pytest.approx(cell.correlation, rel=1e-5, abs=1e-6)
        for side in ("ablation_bits_on", "ablation_bits_off"):
            expected = getattr(cell, side)
            assert shown[side] == (None if expected is None else pytest.approx(expected, rel=1e-3, abs=1e-5))
    assert {c["feature"] for c in answer["cells"]} >= {"inside_quotes", "inside_brackets", "line_position"}
    assert [row["layer"] for row in answer["memory"]] == [0, 1]


def test_per_feature_sets_how_many_cells_each_feature_reports(checkpoint):
    with serving(checkpoint) as client:
        answer = client.post("/v1/inspect", json={"text": TEXT, "per_feature": 1}).json()
    features = [cell["feature"] for cell in answer["cells"]]
    assert len(features) == len(set(features)) and "inside_quotes" in features


def test_with_a_key_set_inspect_needs_it(checkpoint):
    with serving(checkpoint, AccessSettings(api_keys=("inspect-key",))) as client:
        without = client.post("/v1/inspect", json={"text": TEXT})
        wrong = client.post("/v1/inspect", json={"text": TEXT}, headers={"Authorization": "Bearer other"})
        right = client.post("/v1/inspect", json={"text": TEXT}, headers={"Authorization": "Bearer inspect-key"})
    for refused in (without, wrong):
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200 and right.json()["object"] == "inspection"


def test_a_text_over_the_cap_is_refused_and_one_at_it_is_inspected(checkpoint):
    with serving(checkpoint, max_inspect_chars=20) as client:
        over = client.post("/v1/inspect", json={"text": "x" * 21})
        at = client.post("/v1/inspect", json={"text": "the fox (jumps) over"})
        empty = client.post("/v1/inspect", json={"text": ""})
        other_model = client.post("/v1/inspect", json={"model": "other", "text": "fox"})
    assert over.status_code == 400
    error = over.json()["error"]
    assert (error["param"], error["code"], error["type"]) == ("text", "request_too_large", "invalid_request_error")
    assert "21 characters" in error["message"] and "limit of 20" in error["message"]
    assert "--max-inspect-chars" in error["message"]
    assert at.status_code == 200 and len(at.json()["tokens"]) == 20
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "text"
    assert other_model.status_code == 404 and other_model.json()["error"]["code"] == "model_not_found"


def test_the_server_answers_while_an_inspection_runs(checkpoint, monkeypatch):
    """The recording runs in a worker thread: /health and a completion answer while it is held up."""
    started, release = threading.Event(), threading.Event()
    running = []  # True while the recorder is inside
    real_record = inspector.record

    def slow_record(model, tokenizer, text):
        running.append(True)
        started.set()
        release.wait(20)  # on the event loop this would hold every other request until it gives up
        running.append(False)
        return real_record(model, tokenizer, text)

    monkeypatch.setattr(inspector, "record", slow_record)
    with serving(checkpoint) as client:
        answers = {}

        def inspect():
            answers["inspect"] = client.post("/v1/inspect", json={"text": TEXT})

        inspecting = threading.Thread(target=inspect)
        inspecting.start()
        try:
            assert started.wait(WAIT)
            health = client.get("/health")
            completion = client.post("/v1/completions", json={"model": "tiny", "prompt": "the", "max_tokens": 3})
            still_running = running[-1]
        finally:
            release.set()
            inspecting.join(WAIT)
    assert health.status_code == 200 and completion.status_code == 200
    assert still_running, "the server answered only once the inspection was over"
    assert answers["inspect"].status_code == 200 and len(answers["inspect"].json()["tokens"]) > 0
