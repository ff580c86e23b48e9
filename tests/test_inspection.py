"""`textlstm inspect` and textlstm/inspection/: the recorded gates and states are the model's own,
the features say what they claim, the cells found mean something, and the command answers in one
line when the input is wrong."""

from __future__ import annotations

import base64
import json
import math
import random
import re
import sys

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL, small_model, tiny_char_model
from textlstm.config import ModelConfig
from textlstm.data.tokenizer import build_tokenizer
from textlstm.inspection import report
from textlstm.inspection.cells import correlations, find_cells
from textlstm.inspection.features import Feature, text_features
from textlstm.inspection.inspector import Inspection, inspect_text, write_report
from textlstm.inspection.memory import memory
from textlstm.inspection.recorder import PIECE, record
from textlstm.model.gates import HeldCells, trace_gates
from textlstm.model.network import LSTMLanguageModel
from textlstm.model.quantized import quantize_int8

CELLS = {"lstm": {}, "mogrifier": {"cell": "mogrifier", "mogrifier_rounds": 3}}


# --- the recorded states are the model's --------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_the_recorded_hidden_states_give_forwards_logits_and_state(cell):
    model = small_model(**CELLS[cell]).eval()
    ids = torch.randint(2, 30, (3, 50), generator=torch.Generator().manual_seed(1))
    trace = trace_gates(model, ids)
    with torch.no_grad():
        logits, (h, c) = model(ids)
    assert torch.allclose(model.logits(trace.gates["hidden"][-1]), logits, atol=1e-5)
    assert torch.allclose(trace.state[0], h, atol=1e-6) and torch.allclose(trace.state[1], c, atol=1e-6)
    # and the recorded gates are those that made the states: h = o * tanh(c), c within (-1, 1) scaled by i
    gates = trace.gates
    assert torch.allclose(gates["hidden"], gates["output"] * torch.tanh(gates["cell"]), atol=1e-6)
    assert gates["forget"].min() > 0 and gates["forget"].max() < 1


def test_the_int8_models_recorded_states_give_its_own_logits():
    model = quantize_int8(small_model().eval())
    ids = torch.randint(2, 30, (2, 40), generator=torch.Generator().manual_seed(2))
    trace = trace_gates(model, ids)
    assert torch.allclose(model.logits(trace.outputs), model(ids)[0], atol=1e-5)


def test_a_held_cell_stays_at_its_value_and_nothing_else_moves_without_a_hold():
    model = small_model().eval()
    ids = torch.randint(2, 30, (2, 30), generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(2, 2, 12, dtype=torch.bool)
    values = torch.zeros(2, 2, 12)
    mask[1, 0, 5], values[1, 0, 5] = True, 0.75  # row 0 holds layer 1's cell 5; row 1 holds nothing
    held = trace_gates(model, ids, held=HeldCells(mask, values)).gates
    free = trace_gates(model, ids).gates
    assert torch.all(held["cell"][1, 0, :, 5] == 0.75)
    assert torch.allclose(held["hidden"][1, 0, :, 5], held["output"][1, 0, :, 5] * math.tanh(0.75))
    assert not torch.allclose(held["hidden"][1, 0], free["hidden"][1, 0])
    assert torch.allclose(held["hidden"][:, 1], free["hidden"][:, 1], atol=1e-6)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_a_recording_read_in_pieces_scores_each_token_as_forward_does(kind, shakespeare_text):
    """Longer than one piece, so the state is carried; for BPE a token stands for several characters."""
    text = shakespeare_text[: PIECE * 3]
    tokenizer = build_tokenizer(kind, [shakespeare_text[:20_000]], vocab_size=300 if kind == "bpe" else None)
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            tokenizer.vocab_size, embedding_size=8, hidden_size=16, layers=2, dropout=0.0, recurrent_dropout=0.0
        )
    ).eval()
    recording = record(model, tokenizer, text)
    ids = torch.tensor([[1, *tokenizer.encode(text)]])
    assert ids.shape[1] - 1 == len(recording.ends) > PIECE
    with torch.no_grad():
        log_probs = torch.log_softmax(model(ids)[0][0, :-1], dim=-1)
    expected = -log_probs.gather(1, ids[0, 1:, None])[:, 0].numpy()
    np.testing.assert_allclose(recording.nats, expected, atol=1e-4)
    assert "".join(recording.pieces) == text and recording.chars.sum() == len(text)
    assert recording.bits_per_char == pytest.approx(expected.sum() / len(text) / math.log(2), rel=1e-5)
    assert recording.cell.shape == (2, len(recording.ends), 16)


# --- features -------------------------------------------------------------------------------------


def feature_string(text: str, name: str) -> str:
    feature = next(f for f in text_features(text, ["o+"]) if f.name == name)
    return "".join(str(int(v))[-1] for v in feature.values)


@pytest.mark.parametrize(
    "name,text,expected",
    [
        ("inside_quotes", 'a "bc" d “e”', "001110000110"),
        ("bracket_depth", "a(b[c]d))e(", "01122110001"),
        ("inside_brackets", "(a)b", "1100"),
        ("line_position", "ab\ncde\n", "1201230"),
        ("indentation", "  a \n\tb\n c", "1222044011"),
        ("word_start", "ab c_d,e1", "100100010"),
        ("sentence_start", "Hi. Yes! no 3.5 ok? Go", "1000100001000000000010"),
        ("code_comment", "x # y\nz // w\n/* a */b", "001110001111011111100"),
        ("code_string", "a 'b\\'c' don't \"d\"\nf'x' 'open\nz", "0011111000000001100011001111100"),
        ("regex:o+", "foo bo", "011001"),
    ],
)
def test_a_feature_holds_after_reading_each_character(name, text, expected):
    assert feature_string(text, name) == expected


def test_chars_left_counts_down_to_the_lines_usual_length():
    text = "abcd\nabcd\nabcdef\n"  # usual (median) length 4
    left = next(f for f in text_features(text) if f.name == "chars_left_in_line").values
    assert list(left[10:17]) == [3, 2, 1, 0, 0, 0, 4]


def test_a_tokens_feature_value_is_its_last_characters():
    feature = Feature("f", np.array([0, 1, 1, 0, 2], dtype=np.float32))
    assert list(feature.per_token(np.array([2, 3, 5]))) == [1, 1, 2]


def test_a_bad_regular_expression_is_one_error_before_the_model_loads(tmp_path):
    from textlstm.errors import TextlstmError

    with pytest.raises(TextlstmError, match=r"bad --feature regular expression '\('"):
        inspect_text("some text", checkpoint=tmp_path / "no such run", regex=["("])


# --- cells and memory -----------------------------------------------------------------------------


def test_correlation_is_signed_and_a_constant_cell_has_none():
    feature = np.array([0, 1, 1, 0, 1, 0], dtype=np.float32)
    cell = np.stack([feature * 3 - 1, -feature, np.full(6, 0.5), np.arange(6.0)], axis=1)[None]  # [1, tokens, 4]
    r = correlations(cell, feature)
    assert r[0, :3] == pytest.approx([1.0, -1.0, 0.0])
    assert abs(r[0, 3]) < 1


def test_a_feature_on_at_every_token_finds_cells_without_an_ablation():
    """No newline: the position in the line is above 0 everywhere, so there is no mean where it is off."""
    model, tokenizer, _ = tiny_char_model()
    text = "the quick brown fox"
    cells = find_cells(record(model, tokenizer, text), [f for f in text_features(text) if f.name == "line_position"])
    assert len(cells) == 3 and all(cell.ablation_bits_on is None and cell.held_at is None for cell in cells)
    assert abs(cells[0].correlation) > 0


def test_time_constants_come_from_the_mean_forget_gate():
    class Forget:  # one layer, two tokens, five cells: the mean of 0.7 and 0.9 is 0.8
        forget_gate = np.array([[[0.7, 0.95, 0.995, 0.9995, 1.0], [0.9, 0.95, 0.995, 0.9995, 1.0]]], dtype=np.float32)

    found = memory(Forget())
    assert found.time_constants[0] == pytest.approx([5, 20, 200, 2000, 1e7], rel=1e-3)
    assert found.as_dicts() == [
        {
            "layer": 0,
            "median_steps": pytest.approx(200, rel=1e-3),
            "share_over_10": 0.8,
            "share_over_100": 0.6,
            "share_over_1000": 0.4,
        }
    ]


# --- the meaning test -----------------------------------------------------------------------------

WORDS = "the a cat dog sat ran on under over big small red old new house tree we they said".split()


def synthetic_text(rng: random.Random, length: int) -> str:
    """Lines of lower-case words, with quoted spans in upper case and brackets that nest."""
    lines = []
    while sum(map(len, lines)) < length:
        words = []
        for _ in range(rng.randint(4, 9)):
            kind = rng.random()
            if kind < 0.25:
                words.append('"' + " ".join(rng.choice(WORDS).upper() for _ in range(rng.randint(2, 6))) + '"')
            elif kind < 0.4:
                words.append(nested(rng, rng.randint(1, 3)))
            else:
                words.append(rng.choice(WORDS))
        lines.append(" ".join(words) + ".\n")
    return "".join(lines)


def nested(rng: random.Random, depth: int) -> str:
    opener, closer = rng.choice(["()", "[]"])
    inner = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2)))
    return opener + inner + (" " + nested(rng, depth - 1) if depth > 1 else "") + closer


def test_a_small_char_model_grows_a_quote_cell_that_ablation_confirms():
    """1 x 64, 300 steps of Adam on 30,000 characters (seed 0). Measured: the best "inside_quotes"
    cell has |R| 0.85 and its ablation costs 0.26 bits/char inside quotes against 0.015 outside.
    Holding the cell next to it instead (at the same value) costs 0.07 inside and 0.05 outside:
    anything held costs a little more inside quotes, where the text is harder, hence the margin."""
    text = synthetic_text(random.Random(0), 30_000)
    tokenizer = build_tokenizer("char", [text])
    ids = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            tokenizer.vocab_size, embedding_size=16, hidden_size=64, layers=1, dropout=0.0, recurrent_dropout=0.0
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        starts = torch.randint(0, len(ids) - 65, (32,))
        batch = torch.stack([ids[start : start + 65] for start in starts])
        total, count, _ = model.loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        (total / count).backward()
        optimizer.step()
    held_out = synthetic_text(random.Random(100), 2_000)
    recording = record(model.eval(), tokenizer, held_out)
    cells = [cell for cell in find_cells(recording, text_features(held_out)) if cell.feature == "inside_quotes"]
    assert any(
        abs(cell.correlation) >= 0.8 and cell.ablation_bits_on > max(0.1, 5 * cell.ablation_bits_off) for cell in cells
    ), cells


# --- the command and the Python API, on a model trained by `textlstm train` -----------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    import os

    from conftest import TINYSHAKESPEARE
    from textlstm.cli.main import main

    if not TINYSHAKESPEARE.is_file():
        pytest.skip("shared corpus missing")
    folder = tmp_path_factory.mktemp("inspect")
    corpus = folder / "small.txt"
    corpus.write_text(TINYSHAKESPEARE.read_text()[:20_000])
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        main(["train", "--dataset", str(corpus), *TINY_MODEL, "--max-steps", "3", "--output", str(folder / "run")])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    finally:
        os.chdir(cwd)
    return folder / "run"


PROMPT = 'KING: "Now, my lord (and [you])," said he.\n  Go.\n'


def test_inspect_prints_the_found_cells_as_json(run_cli, trained_run):
    result = run_cli(
        "inspect",
        "--checkpoint",
        trained_run,
        "--prompt",
        PROMPT,
        "--json",
        "--feature",
        "[A-Z]{2,}",
        "--per-feature",
        "2",
        "--device",
        "cpu",
        "--precision",
        "float32",
    )
    assert result.code == 0, result.err
    found = json.loads(result.out)
    features = {cell["feature"] for cell in found["cells"]}
    assert {"inside_quotes", "bracket_depth", "regex:[A-Z]{2,}"} <= features
    for cell in found["cells"]:
        assert set(cell) == {"layer", "index", "feature", "correlation", "ablation_bits_on", "ablation_bits_off"}
        assert 0 <= cell["layer"] < 2 and 0 <= cell["index"] < 32 and -1 <= cell["correlation"] <= 1
    assert sum(cell["feature"] == "inside_quotes" for cell in found["cells"]) == 2
    strengths = [abs(cell["correlation"]) for cell in found["cells"]]
    assert strengths == sorted(strengths, reverse=True)
    assert found["characters"] == len(PROMPT) == found["tokens"] and found["bits_per_char"] > 0
    assert [row["layer"] for row in found["memory"]] == [0, 1]


def test_inspect_writes_a_self_contained_report(run_cli, trained_run, tmp_path):
    result = run_cli(
        "inspect",
        "--checkpoint",
        trained_run,
        "--prompt",
        PROMPT,
        "--output",
        tmp_path / "out",
        "--device",
        "cpu",
        "--precision",
        "float32",
    )
    assert result.code == 0, result.err
    assert "inside_quotes" in result.out and "memory, layer 1" in result.out
    page = (tmp_path / "out" / "report.html").read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # nothing loaded from elsewhere
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.DOTALL)[1])
    assert "".join(data["pieces"]) == PROMPT
    assert len(data["cells"]) == 64  # both layers' 32 cells fit
    if "matplotlib" in sys.modules or _has_matplotlib():
        pictures = {"cells.png", "gate_saturation.png", "memory.png"}
        assert {path.name for path in (tmp_path / "out").iterdir()} == {"report.html", *pictures}


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_newest_run_is_inspected_by_default(run_cli, trained_run, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "run").symlink_to(trained_run)
    result = run_cli("inspect", "--prompt", "to be", "--json", "--device", "cpu")
    assert result.code == 0, result.err
    assert json.loads(result.out)["characters"] == 5


def test_the_python_api_returns_arrays_and_cells(trained_run):
    import textlstm

    recording = textlstm.record_states(PROMPT, checkpoint=trained_run)
    assert isinstance(recording.forget_gate, np.ndarray) and recording.cell.shape == (2, len(PROMPT), 32)
    cells = textlstm.find_cells(recording, regex=["said"], per_feature=1)
    assert {cell.feature for cell in cells} >= {"inside_quotes", "regex:said"}
    assert all(cell.ablation_bits_on is not None for cell in cells)


def inspection_of(trained_run, text: str) -> Inspection:
    return inspect_text(text, trained_run, device="cpu", precision="float32")


def test_a_long_text_is_capped_in_the_report_and_the_values_decode(trained_run, monkeypatch):
    monkeypatch.setattr(report, "MAX_TOKENS", 10)
    monkeypatch.setattr(report, "MAX_BYTES", 10 * 5 * 7)  # room for 7 cells
    inspection = inspection_of(trained_run, PROMPT)
    page = report.report_html(inspection)
    data = json.loads(re.search(r'id="data">(.*?)</script>', page, re.DOTALL).group(1))
    assert "".join(data["pieces"]) == PROMPT[:10] and "the first 10 of" in page
    found = [list(key) for key in dict.fromkeys((cell.layer, cell.index) for cell in inspection.cells)]
    assert data["cells"][: len(found)] == found and len(data["cells"]) == max(7, len(found))
    layer, index = data["cells"][0]
    series = data["series"][f"{layer}:{index}"]
    forget = np.frombuffer(base64.b64decode(series["forget"]), dtype=np.uint8) / 255
    np.testing.assert_allclose(forget, inspection.recording.forget_gate[layer, :10, index], atol=1 / 255)


def test_without_matplotlib_the_report_is_written_and_the_pngs_left_out_with_a_note(trained_run, tmp_path, monkeypatch):
    from textlstm.inspection import inspector

    monkeypatch.setattr(inspector, "matplotlib_available", lambda: False)
    written, note = write_report(inspection_of(trained_run, PROMPT), tmp_path / "out")
    assert [path.name for path in written] == ["report.html"] and "pip install" in note
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["report.html"]


@pytest.mark.parametrize(
    "args,expected",
    [
        ([], "--prompt TEXT or --prompt-file FILE"),
        (["--prompt", ""], "empty"),
        (["--prompt", "x", "--prompt-file", "p.txt"], "not both"),
        (["--prompt-file", "missing.txt"], "missing.txt"),
        (["--prompt", "x", "--feature", "[a-"], "bad --feature regular expression"),
        (["--prompt", "x", "--per-feature", "0"], "--per-feature"),
        (["--prompt", "x", "--checkpoint", "no/such/run"], "no/such/run"),
        (["--prompt", "x", "--checkpoint", "{run}", "--output", "{run}/config.json"], "config.json"),
    ],
)
def test_bad_input_is_one_error_line(run_cli, trained_run, args, expected):
    result = run_cli("inspect", *[arg.replace("{run}", str(trained_run)) for arg in args], "--device", "cpu")
    assert result.code != 0 and "Traceback" not in result.err
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.err


def test_without_a_checkpoint_it_says_how_to_get_one(run_cli):
    result = run_cli("inspect", "--prompt", "x", "--device", "cpu")
    assert result.code == 1 and result.err.startswith("error: no checkpoint found")
