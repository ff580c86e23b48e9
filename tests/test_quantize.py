"""int8 weights (textlstm/model/quantized.py, `--quantize int8`): next-token probabilities close to
float32's, the same state however a text is read, and the commands and the server that take it."""

from __future__ import annotations

import io
import signal
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import small_model, write_tiny_checkpoint
from textlstm.config import ModelConfig
from textlstm.data.tokenizer import build_tokenizer
from textlstm.errors import TextlstmError
from textlstm.evaluation.scoring import evaluate_split
from textlstm.generation.generator import load
from textlstm.model.network import LSTMLanguageModel
from textlstm.model.quantized import QuantizedLanguageModel, quantize_int8

TEXT_TOKENS = 300


def trained_model(text: str, tokenizer: str, **config) -> tuple[LSTMLanguageModel, torch.Tensor]:
    """A 2 x 32 model (embedding 16) trained 200 steps on the first 90% of `text` (50 steps for the
    slower Mogrifier), and the ids of the rest."""
    options = {"vocab_size": 300} if tokenizer == "word" else {}
    built = build_tokenizer(tokenizer, [text[: int(len(text) * 0.9)]], **options)
    if config.pop("byte_softmax", False):
        config["byte_fallback_start"] = built.byte_fallback_start
    ids = torch.tensor(built.hf.encode(text, add_special_tokens=False).ids)
    split = int(len(ids) * 0.9)
    torch.manual_seed(0)
    model = LSTMLanguageModel(
        ModelConfig(
            built.vocab_size, embedding_size=16, hidden_size=32, layers=2, dropout=0.0, recurrent_dropout=0.0, **config
        )
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50 if config.get("cell") == "mogrifier" else 200):
        starts = torch.randint(0, split - 65, (16,))
        batch = torch.stack([ids[start : start + 65] for start in starts])
        total, count, _ = model.loss(batch[:, :-1], batch[:, 1:])
        optimizer.zero_grad()
        (total / count).backward()
        optimizer.step()
    return model.eval(), ids[split:]


KINDS = {
    "char, byte-fallback softmax": ("char", {"byte_softmax": True}),
    "char, full softmax": ("char", {}),
    "char, tied to a smaller embedding (a projection)": ("char", {"tie_weights": True}),
    "word, adaptive softmax": ("word", {"output_layer": "adaptive", "adaptive_cutoffs": [50, 150]}),
    "char, mogrifier": ("char", {"cell": "mogrifier", "mogrifier_rounds": 4}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_int8_next_token_log_probabilities_stay_close_to_float32s(shakespeare_text, kind):
    """Over 300 held-out tokens, the state carried. The bounds leave room: measured on these models,
    the mean KL divergence per token was 0.2-1.7e-4 nats (bound 1e-3), the largest change in the
    log-probability of a token float32 gives p > 1e-3 was 0.03-0.16 (bound 0.5), and the mean loss
    moved by at most 0.0011 nats (bound 0.01). One step's error is small (7-bit inputs, 8-bit
    weights), but carried over 300 steps the two states drift apart a little: the largest change at
    any one token is several times a single step's."""
    tokenizer, config = KINDS[kind]
    model, held_out = trained_model(shakespeare_text[:40_000], tokenizer, **config)
    ids, targets = held_out[None, :TEXT_TOKENS], held_out[1 : TEXT_TOKENS + 1]
    with torch.inference_mode():
        exact = F.log_softmax(model(ids)[0][0].float(), dim=-1)
        int8 = F.log_softmax(quantize_int8(model)(ids)[0][0], dim=-1)
    kl = (exact.exp() * (exact - int8)).sum(dim=-1)
    likely = exact > -7
    assert kl.mean() < 1e-3
    assert (exact - int8).abs()[likely].max() < 0.5
    loss, int8_loss = (-log_probs.gather(1, targets[:, None]).mean() for log_probs in (exact, int8))
    assert abs(int8_loss - loss) < 0.01


SMALL_KINDS = [
    {},
    {"cell": "mogrifier", "mogrifier_rounds": 3},
    {"output_layer": "adaptive", "adaptive_cutoffs": [10, 20], "hidden_size": 32},
]


@pytest.mark.parametrize("overrides", SMALL_KINDS)
def test_reading_a_prompt_in_one_call_gives_the_state_of_stepping_it_token_by_token(overrides):
    model = quantize_int8(small_model(**overrides).eval())
    ids = torch.randint(1, 30, (3, 40))
    lengths = torch.tensor([40, 25, 7])
    with torch.inference_mode():
        hidden, (h, c) = model.hidden_states(ids, lengths=lengths)
        logits = model.logits(hidden)
        for row, length in enumerate(lengths.tolist()):
            state = None
            for t in range(length):
                step_logits, state = model.step(ids[row : row + 1, t], state)
                torch.testing.assert_close(step_logits[0], logits[row, t], atol=1e-5, rtol=0)
            torch.testing.assert_close(state[0][:, 0], h[:, row], atol=1e-6, rtol=0)
            torch.testing.assert_close(state[1][:, 0], c[:, row], atol=1e-6, rtol=0)
            assert not hidden[row, length:].any()  # padding: zero, as the float32 model gives


def test_a_row_reads_the_same_alone_or_beside_other_rows():
    """Each product's input is quantized over a range fixed per row, so a sequence in the server's
    batch gets the probabilities it gets alone (the float32 first-layer product still rounds by batch shape)."""
    model = quantize_int8(small_model().eval())
    ids = torch.randint(1, 30, (8, 30))
    with torch.inference_mode():
        together, (h, _) = model(ids)
        alone, (h_alone, _) = model(ids[5:6])
    torch.testing.assert_close(alone[0], together[5], atol=1e-4, rtol=0)
    torch.testing.assert_close(h_alone[:, 0], h[:, 5], atol=1e-5, rtol=0)


def test_the_evaluation_code_scores_the_int8_model():
    model = quantize_int8(small_model().eval())
    ids = torch.randint(1, 30, (200,))
    with torch.inference_mode():
        log_probs = F.log_softmax(model(ids[None, :-1])[0][0], dim=-1)
    expected = -log_probs.gather(1, ids[1:, None]).sum()
    result = evaluate_split(model, ids.numpy(), batch_size=1, seq_len=64, burn_in=0)
    assert result.tokens == 199 and abs(result.loss_sum - float(expected)) < 1e-3
    with pytest.raises(TextlstmError, match="sampling and scoring only"):
        model.train()


# --- the commands ------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    return write_tiny_checkpoint(tmp_path / "checkpoints" / "run")


def test_generate_writes_the_int8_models_text(run_cli, checkpoint):
    result = run_cli(
        "generate",
        "--checkpoint",
        checkpoint,
        "--quantize",
        "int8",
        "--temperature",
        "0",
        "--prompt",
        "the ",
        "--max-tokens",
        "30",
    )
    assert result.code == 0, result.err
    expected = load(checkpoint, quantize="int8").generate("the ", temperature=0, max_tokens=30)
    assert isinstance(load(checkpoint, quantize="int8").model, QuantizedLanguageModel)
    assert result.out == "the " + expected + "\n" and len(expected) == 30


def test_chat_answers_with_the_int8_model(run_cli, checkpoint, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("the quick fox\n"))
    result = run_cli(
        "chat", "--checkpoint", checkpoint, "--quantize", "int8", "--temperature", "0", "--max-tokens", "12"
    )
    assert result.code == 0, result.err
    session = load(checkpoint, quantize="int8").session(temperature=0, max_tokens=12)
    assert result.out == "".join(session.send("the quick fox")) + "\n"


def test_serve_answers_with_the_int8_model(run_cli, checkpoint, monkeypatch):
    """Through the app `textlstm serve --quantize int8` builds; its batched steps give the text the
    library gives alone."""
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    import textlstm.serve.server

    answers = []

    class AnswerOneThenStop(textlstm.serve.server.RunningServer):
        def start(self, timeout: float = 60.0):
            super().start(timeout)
            with httpx.Client(base_url=self.url, timeout=60) as client:
                body = {"model": "run", "prompt": "the quick", "max_tokens": 30, "temperature": 0}
                answers.append(client.post("/v1/completions", json=body).json())
            self.stop()
            return self

    monkeypatch.setattr(textlstm.serve.server, "RunningServer", AnswerOneThenStop)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: None)  # the command's handlers would outlive it
    result = run_cli("serve", "--checkpoint", checkpoint, "--port", "0", "--quantize", "int8")
    assert result.code == 0, result.err
    expected = load(checkpoint, quantize="int8").generate("the quick", temperature=0, max_tokens=30)
    assert answers[0]["choices"][0]["text"] == expected


@pytest.mark.parametrize("command", ["generate", "chat", "serve"])
@pytest.mark.parametrize(
    "flags, words", [(("--precision", "bfloat16"), "not both"), (("--device", "cuda"), "CPU only")]
)
def test_what_int8_cannot_do_is_one_line(run_cli, checkpoint, command, flags, words):
    result = run_cli(command, "--checkpoint", checkpoint, "--quantize", "int8", *flags)
    assert result.code == 1 and "Traceback" not in result.err
    lines = [line for line in result.err.splitlines() if not line.startswith("listening on ")]  # serve may listen first
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]


def test_load_refuses_an_unknown_quantization(checkpoint):
    with pytest.raises(TextlstmError, match="quantize must be int8"):
        load(checkpoint, quantize="int4")


def test_int8_weights_are_a_quarter_of_float32s():
    model = LSTMLanguageModel(ModelConfig(vocab_size=100, embedding_size=16, hidden_size=64, layers=2))
    float32 = sum(p.numel() * 4 for p in model.parameters())
    assert quantize_int8(model.eval()).weight_bytes() < 0.4 * float32
