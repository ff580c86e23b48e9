"""Help texts that state what the code does, checked against the constants the code uses."""

from __future__ import annotations

import re

import pytest

from textlstm.cli.serve import serve
from textlstm.cli.train import train
from textlstm.data.corpora.loaded import DEFAULT_VALID_FRACTION
from textlstm.data.streaming import TOKENIZER_SAMPLE_CHARS, VALID_CHARS


def help_of(command, name: str) -> str:
    return " ".join(next(param.help for param in command.params if param.name == name).split())


def test_api_keys_help_names_every_route_open_without_a_key():
    pytest.importorskip("fastapi")
    from textlstm.serve.security import OPEN_PATHS

    named = help_of(serve, "api_key").partition("every route but")[2]
    assert set(re.findall(r"/[\w.]*\w|/", named)) == OPEN_PATHS


def test_serves_help_names_every_route():
    pytest.importorskip("fastapi")
    from textlstm.serve.app import create_loading_app

    def paths(routes) -> set[str]:  # FastAPI 0.165 lists an included router as one entry
        found = set()
        for route in routes:
            included = getattr(route, "original_router", None)
            found |= paths(included.routes) if included is not None else {route.path}
        return found

    app = create_loading_app(lambda: None)  # made, not started: nothing is loaded
    words = set(re.findall(r"/[\w./]*\w|/", " ".join(serve.help.split())))
    served = {path for path in paths(app.routes) if "{" not in path}
    assert {"/v1/completions", "/v1/inspect"} <= served and served <= words


def test_streamings_help_states_what_is_held_out_and_what_the_tokenizer_reads():
    text = help_of(train, "streaming")
    assert f"for local files the last {DEFAULT_VALID_FRACTION:.0%} of their characters" in text
    assert f"for a hub id the stream's first rows, {VALID_CHARS:,} characters' worth" in text
    assert f"the first {VALID_CHARS:,} characters of the corpus's validation split" in text
    assert f"The tokenizer learns from the first {TOKENIZER_SAMPLE_CHARS:,} characters of the training rows" in text
