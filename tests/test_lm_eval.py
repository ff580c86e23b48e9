"""EleutherAI's lm-evaluation-harness against `textlstm serve`, end to end: `lm_eval --model
local-completions` with the server's remote tokenizer runs a loglikelihood task and a rolling
perplexity task of our own (tests/lm_eval_tasks/, local files only), and its figures are the ones
`textlstm eval`'s scoring gives. Skipped without the lm-eval extra (and the serve extra)."""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
if importlib.util.find_spec("lm_eval") is None:
    pytest.skip('lm-evaluation-harness is not installed: pip install -e ".[lm-eval]"', allow_module_level=True)

from conftest import write_tiny_checkpoint
from textlstm.evaluation.scoring import score_stream
from textlstm.generation.generator import load
from textlstm.serve.app import ServeSettings, create_app
from textlstm.serve.server import RunningServer
from textlstm.tokens import EOT_ID

TASKS = Path(__file__).resolve().parent / "lm_eval_tasks"
WAIT = 600  # seconds: a bound on lm_eval's run, never reached when things work


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_lm_eval(url: str, output: Path) -> tuple[dict, dict[str, list[dict]]]:
    """lm_eval's results and its logged samples (per task), for both tasks against the server at `url`."""
    model_args = ",".join(
        [
            f"base_url={url}/v1/completions",
            "model=tiny",
            # the server's /tokenizer_info, /tokenize and /detokenize: no Hugging Face download
            "tokenizer_backend=remote",
            "custom_prefix_token_id=1",  # rolling windows start at the end-of-text token, as textlstm reads a text
            "max_length=10000",  # longer than any document: each is one window
            "max_retries=1",
        ]
    )
    command = [
        sys.executable,
        "-m",
        "lm_eval",
        "--model",
        "local-completions",
        "--model_args",
        model_args,
        "--tasks",
        "textlstm_choice,textlstm_rolling",
        "--include_path",
        str(TASKS),
        "--output_path",
        str(output),
        "--log_samples",
    ]
    # cwd: the tasks' data_files are relative to it. The environment is conftest's: offline, caches under tmp_path.
    done = subprocess.run(command, cwd=TASKS, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr[-4000:]
    [results] = glob.glob(str(output / "**" / "results_*.json"), recursive=True)
    samples = {}
    for task in ("textlstm_choice", "textlstm_rolling"):
        [path] = glob.glob(str(output / "**" / f"samples_{task}_*.jsonl"), recursive=True)
        samples[task] = sorted(read_jsonl(Path(path)), key=lambda sample: sample["doc_id"])
    return json.loads(Path(results).read_text())["results"], samples


def test_lm_eval_scores_a_served_model_as_textlstm_eval_does(tmp_path):
    lm = load(write_tiny_checkpoint(tmp_path / "tiny"))  # float32, as eval scores

    def nats(text: str) -> float:
        """textlstm eval's summed loss of `text` read after the start-of-text token (without the end of text it
        adds)."""
        loss_sum, _ = score_stream(lm.model, np.array([EOT_ID, *lm.tokenizer.encode(text)]))
        return loss_sum

    with RunningServer(create_app(lm, ServeSettings(model_name="tiny")), "127.0.0.1", 0) as server:
        results, samples = run_lm_eval(server.url, tmp_path / "lm_eval")

    # Rolling perplexity: each document fits one window that starts at the end-of-text token, so
    # its log-likelihood is minus textlstm eval's loss, to float32 rounding.
    documents = [doc["text"] for doc in read_jsonl(TASKS / "documents.jsonl")]
    expected = [-nats(text) for text in documents]
    logged = [float(sample["resps"][0][0]) for sample in samples["textlstm_rolling"]]
    assert logged == pytest.approx(expected, rel=1e-5)
    words = sum(len(text.split()) for text in documents)
    utf8_bytes = sum(len(text.encode("utf-8")) for text in documents)
    rolling = results["textlstm_rolling"]
    assert math.log(rolling["word_perplexity,none"]) == pytest.approx(-sum(expected) / words, rel=1e-5)
    assert rolling["bits_per_byte,none"] == pytest.approx(-sum(expected) / math.log(2) / utf8_bytes, rel=1e-5)

    # Loglikelihood: each choice's log-probability after its context.
    docs = read_jsonl(TASKS / "choice.jsonl")
    for doc, sample in zip(docs, samples["textlstm_choice"]):
        expected = [nats(doc["context"]) - nats(doc["context"] + choice) for choice in doc["choices"]]
        assert [float(resp[0][0]) for resp in sample["resps"]] == pytest.approx(expected, rel=1e-5)
        assert sample["acc"] == float(int(np.argmax(expected)) == doc["answer"])
    assert results["textlstm_choice"]["acc,none"] == pytest.approx(
        np.mean([s["acc"] for s in samples["textlstm_choice"]])
    )
