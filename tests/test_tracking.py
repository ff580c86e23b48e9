"""Following a run: --log-to tensorboard and --sample-every (textlstm/training/tracking.py)."""

import io
import json
import os
import signal
import sys

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def weights(folder) -> dict:
    return torch.load(folder / "trainer_state.pt", weights_only=True)["model"]


def test_log_to_tensorboard_writes_the_figures_the_settings_and_the_samples(run_cli, small_corpus, tmp_path):
    pytest.importorskip("tensorboard", reason='needs the tracking extra: pip install "textlstm[tracking]"')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    from textlstm.config import RunConfig
    from textlstm.training.tracking import as_code_block

    out = tmp_path / "run"
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--max-steps",
        "12",
        "--eval-every",
        "4",
        "--sample-every",
        "1",
        "--log-to",
        "tensorboard",
        "--output",
        out,
    )
    assert result.code == 0, result.err
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()

    records = jsonl(out / "metrics.jsonl")
    figures = {
        name
        for name, value in records[0].items()
        if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    assert {"train_loss", "valid_loss", "valid_bits_per_char", "lr", "tokens_per_sec"} <= figures
    assert set(events.Tags()["scalars"]) == figures
    for name in figures:  # TensorBoard keeps float32
        assert [(e.step, e.value) for e in events.Scalars(name)] == [
            (r["step"], np.float32(r[name])) for r in records
        ], name

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    saved = RunConfig.load(out / "config.json")  # with the settings chosen when the data was known
    assert hparams["model.hidden_size"].number_value == 32
    assert hparams["data.tokenizer"].string_value == saved.data.tokenizer == "char"
    assert saved.model.dropout is not None and hparams["model.dropout"].number_value == saved.model.dropout
    assert hparams["train.weight_decay"].number_value == saved.train.weight_decay

    samples = jsonl(out / "samples.jsonl")
    assert [s["step"] for s in samples] == [4, 8, 12] and all(s["text"] for s in samples)
    texts = [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors("sample/text_summary")]
    assert texts == [(s["step"], as_code_block(s["text"])) for s in samples]


def test_log_to_tensorboard_without_the_package_fails_before_the_data_is_prepared(
    run_cli, small_corpus, tmp_path, monkeypatch
):
    import textlstm.training.trainer as trainer

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now fails, as without tensorboard
    monkeypatch.setattr(trainer, "prepare", lambda *args, **kwargs: pytest.fail("the data was prepared"))
    out = tmp_path / "run"
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "4", "--log-to", "tensorboard", "--output", out
    )
    assert result.code == 1
    assert (
        result.err.strip()
        == 'error: --log-to tensorboard needs the tensorboard package: pip install "textlstm[tracking]"'
    )
    assert not out.exists()


def test_samples_change_nothing_that_the_run_learns(run_cli, small_corpus, tmp_path):
    """The same run with and without --sample-every: the same weights. Samples come at every 2nd
    evaluation and at the last one, printed and in samples.jsonl; a resumed run may turn them on."""
    common = (
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--dropout",
        "0.2",
        "--recurrent-dropout",
        "0.2",
        "--max-steps",
        "12",
        "--eval-every",
        "4",
        "--seed",
        "5",
    )
    plain = run_cli("train", *common, "--output", tmp_path / "plain")
    sampled = run_cli("train", *common, "--sample-every", "2", "--output", tmp_path / "sampled")
    assert plain.code == 0 and sampled.code == 0, plain.err + sampled.err
    for name, value in weights(tmp_path / "plain").items():
        assert torch.equal(weights(tmp_path / "sampled")[name], value), name
    losses = [[r["valid_loss"] for r in jsonl(tmp_path / run / "metrics.jsonl")] for run in ("plain", "sampled")]
    assert losses[0] == losses[1]
    assert not (tmp_path / "plain" / "samples.jsonl").exists()
    samples = jsonl(tmp_path / "sampled" / "samples.jsonl")
    assert [s["step"] for s in samples] == [8, 12]
    assert all(0 < len(s["text"]) <= 200 for s in samples)
    assert "sample step      8" in sampled.err and "sample step     12" in sampled.err

    resumed = run_cli("train", "--resume", tmp_path / "plain", "--max-steps", "16", "--sample-every", "1")
    assert resumed.code == 0, resumed.err
    assert [s["step"] for s in jsonl(tmp_path / "plain" / "samples.jsonl")] == [16]


def test_a_resumed_run_with_samples_equals_an_uninterrupted_one(small_corpus, tmp_path):
    """Stopped at step 6 (as Ctrl-C stops it) and resumed to 12, with samples at every evaluation:
    the weights of an uninterrupted run, and the same samples at the same steps."""
    from textlstm.cli.samples import training_sample
    from textlstm.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from textlstm.training.trainer import Reporter, train

    def config():
        return RunConfig(
            model=ModelConfig(embedding_size=16, hidden_size=32, dropout=0.2, recurrent_dropout=0.2),
            data=DataConfig(dataset=str(small_corpus)),
            train=TrainConfig(
                batch_size=4, seq_len=32, max_steps=12, eval_every=4, warmup_steps=2, seed=3, sample_every=1
            ),
        )

    class StopAt6(Reporter):
        def step(self, step, loss, tokens_per_sec, lr):
            if step == 6:
                os.kill(os.getpid(), signal.SIGINT)

    whole = train(config(), output=tmp_path / "whole", sample=training_sample)
    stopped = train(config(), output=tmp_path / "stopped", reporter=StopAt6(), sample=training_sample)
    assert stopped.interrupted and stopped.steps == 6
    assert train(resume=tmp_path / "stopped", sample=training_sample).steps == whole.steps == 12
    for name, value in weights(tmp_path / "whole").items():
        torch.testing.assert_close(weights(tmp_path / "stopped")[name], value, rtol=0, atol=1e-6, msg=name)
    uninterrupted = {s["step"]: s["text"] for s in jsonl(tmp_path / "whole" / "samples.jsonl")}
    resumed = {s["step"]: s["text"] for s in jsonl(tmp_path / "stopped" / "samples.jsonl")}
    assert list(uninterrupted) == [4, 8, 12] and list(resumed) == [4, 6, 8, 12]  # 6: the stopped run's last evaluation
    assert {step: resumed[step] for step in uninterrupted} == uninterrupted


def test_the_progress_output_prints_a_sample_as_it_is(tmp_path):
    from rich.console import Console

    from textlstm.cli.progress import RichReporter

    console = Console(file=io.StringIO(), width=100)
    RichReporter(console).sampled(500, "[bold]not markup[/bold]\nsecond line")
    assert console.file.getvalue().splitlines() == [
        "sample step    500",
        "  | [bold]not markup[/bold]",
        "  | second line",
    ]
