"""POST /v1/inspect: what the served model's LSTM does over a text, the page's Cells tab. The
recording, the found cells and the memory are `textlstm inspect`'s (textlstm/inspection/inspector.py),
on the model the engine serves.

The request: {"text": TEXT, "model": NAME (optional; checked when given), "per_feature": N (1-10,
default 3)}; a text over --max-inspect-chars characters is a 400. The answer:

    {"object": "inspection", "model": NAME, "characters": N, "bits_per_char": X,
     "tokens": [{"text": "T", "start": 0, "end": 1}, ...],
     "cells_per_layer": C,
     "layers": [{"input": B64, "forget": B64, "output": B64, "cell": B64, "hidden": B64,
                 "cell_scale": [C numbers]}, ...],
     "cells": [{"layer", "index", "feature", "correlation", "ablation_bits_on", "ablation_bits_off"}, ...],
     "memory": [{"layer", "median_steps", "share_over_10", "share_over_100", "share_over_1000"}, ...]}

`tokens`: each token's characters and where they are in the text (in code points, as Python indexes
a string; a character spelled by several byte tokens belongs to the first, the others are empty).
`cells` and `memory` are what `textlstm inspect --json` prints. Each layer's five series hold one
byte per token and cell, token by token ([tokens, C] in row order), base64: a byte b means b / 255
for the input, forget and output gates, 2 b / 255 - 1 for h, and (2 b / 255 - 1) * cell_scale[k] for
cell k's c, cell_scale[k] being its largest |c| over the text. Rounded so, a value takes 4 / 3 of
a byte where a JSON number with two decimals takes 5 or 6; the values are within 1 / 255 of the
recorded ones (c within cell_scale / 255).

The model is only read (textlstm/inspection/recorder.py runs it in eval mode through `layer_gates`,
which changes no weight, mode or cache), so the inspection runs beside the engine's thread on the
same weights, in a worker thread: the event loop and the engine go on. One inspection runs at a
time (others wait their turn), in as many CPU threads as the engine's step (--threads).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from textlstm.errors import TextlstmError
from textlstm.inspection.inspector import Inspection, inspect_with
from textlstm.serve.bodies import read_body
from textlstm.serve.errors import APIError
from textlstm.serve.routes import check_model
from textlstm.serve.schemas import InspectRequest
from textlstm.serve.state import ServedModel, server_state

router = APIRouter()

GATES = ("input", "forget", "output")  # series over [0, 1]


@router.post("/v1/inspect")
async def inspect(request: Request) -> Response:
    state = server_state(request.app)
    served = state.model
    body = await read_body(request, InspectRequest, served.settings.max_request_bytes)
    if body.model is not None:
        check_model(body.model, request)
    limit = served.settings.max_inspect_chars
    if len(body.text) > limit:
        message = (
            f"the text is {len(body.text):,} characters, over this server's limit of {limit:,} for "
            "/v1/inspect (--max-inspect-chars)"
        )
        raise APIError(400, message, param="text", code="request_too_large")
    async with state.inspecting:
        answer = await run_in_threadpool(_inspected, served, body.text, body.per_feature)
    return Response(answer, media_type="application/json")


def _inspected(served: ServedModel, text: str, per_feature: int) -> bytes:
    """The answer's JSON, made in a worker thread (the recording, and the encoding of a long text's values)."""
    generator = served.generator
    if generator.device.type == "cpu":
        torch.set_num_threads(served.settings.threads)  # what the engine's thread sets too
    try:
        inspection = inspect_with(
            generator.model, generator.tokenizer, generator.checkpoint, text, per_feature=per_feature
        )
    except TextlstmError as error:  # the states would not fit in memory
        raise APIError(400, str(error), param="text", code="request_too_large") from None
    return json.dumps(inspection_answer(inspection, served.settings.model_name)).encode()


def inspection_answer(inspection: Inspection, model_name: str) -> dict:
    recording = inspection.recording
    summary = inspection.as_dict()
    tokens = [
        {"text": piece, "start": int(start), "end": int(end)}
        for piece, start, end in zip(recording.pieces, recording.starts, recording.ends)
    ]
    return {
        "object": "inspection",
        "model": model_name,
        "characters": summary["characters"],
        "bits_per_char": summary["bits_per_char"],
        "tokens": tokens,
        "cells_per_layer": int(recording.cell.shape[2]),
        "layers": [_layer_values(recording.gates(), layer) for layer in range(recording.cell.shape[0])],
        "cells": summary["cells"],
        "memory": summary["memory"],
    }


def _layer_values(series: dict[str, np.ndarray], layer: int) -> dict:
    """One layer's five series [tokens, cells], a byte each, base64 (see the module's docstring)."""
    cell = series["cell"][layer]
    scale = np.abs(cell).max(axis=0)
    scale[scale == 0] = 1.0
    units = {name: series[name][layer] for name in GATES}
    units["cell"] = (cell / scale + 1) / 2
    units["hidden"] = (series["hidden"][layer] + 1) / 2
    encoded = {name: _bytes(values) for name, values in units.items()}
    return {**encoded, "cell_scale": [float(value) for value in scale]}


def _bytes(units: np.ndarray) -> str:
    """Values over [0, 1] as one byte each (b / 255), base64."""
    return base64.b64encode(np.clip(np.round(units * 255), 0, 255).astype(np.uint8).tobytes()).decode("ascii")
