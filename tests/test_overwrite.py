"""--overwrite replaces a textlstm run only once the new one is ready, and loses nothing otherwise;
a resumed run with nothing left to train says so."""

import json

import pytest

from conftest import TINY_MODEL
from test_train import tiny_config
from textlstm.runs.new_run import SET_ASIDE


def contents(folder) -> dict:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def old_run(run_cli, small_corpus, tmp_path):
    """A trained run with a sample log and a TensorBoard-like folder of its own."""
    out = tmp_path / "run"
    assert run_cli("train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "3", "--output", out).code == 0
    (out / "samples.jsonl").write_text(json.dumps({"step": 3, "text": "OLD SAMPLE"}) + "\n")
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.old").write_bytes(b"old events")
    return out


def test_a_missing_dataset_leaves_the_run_to_replace_untouched(run_cli, old_run, tmp_path):
    before = contents(old_run)
    result = run_cli(
        "train", "--dataset", tmp_path / "typo.txt", *TINY_MODEL, "--max-steps", "3", "--output", old_run, "--overwrite"
    )
    assert result.code != 0 and result.err.count("\n") == 1 and "typo.txt" in result.err
    assert contents(old_run) == before


def test_a_bad_option_value_leaves_the_run_to_replace_untouched(run_cli, small_corpus, old_run):
    before = contents(old_run)
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--dropout", "1.5", "--output", old_run, "--overwrite"
    )
    assert result.code != 0 and "Traceback" not in result.err
    assert contents(old_run) == before


@pytest.mark.parametrize("output_is_cwd", [False, True])
def test_a_folder_that_is_not_a_run_is_refused(run_cli, small_corpus, tmp_path, monkeypatch, output_is_cwd):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    (project / "config.json").write_text('{"not": "a textlstm run"}')
    before = contents(project)
    output = project
    if output_is_cwd:  # `--output . --overwrite` inside a project
        monkeypatch.chdir(project)
        output = "."
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2", "--output", output, "--overwrite"
    )
    assert result.code != 0 and result.err.count("\n") == 1
    assert "not a textlstm run" in result.err
    assert contents(project) == before


def test_nothing_of_the_old_run_survives_into_the_new_one(run_cli, small_corpus, old_run):
    result = run_cli(
        "train",
        "--dataset",
        small_corpus,
        *TINY_MODEL,
        "--hidden-size",
        "16",
        "--max-steps",
        "2",
        "--output",
        old_run,
        "--overwrite",
    )
    assert result.code == 0, result.err
    assert not (old_run / "samples.jsonl").exists()
    assert not (old_run / "tensorboard").exists()
    assert not (old_run / SET_ASIDE).exists()
    assert json.loads((old_run / "config.json").read_text())["model"]["hidden_size"] == 16
    assert [json.loads(line)["step"] for line in (old_run / "metrics.jsonl").read_text().splitlines()] == [2]


def test_a_run_that_fails_before_its_first_checkpoint_puts_the_old_run_back(old_run, small_corpus, monkeypatch):
    import textlstm.training.trainer as trainer_module

    before = contents(old_run)
    set_aside_seen = []

    def failing_step(self):
        set_aside_seen.append((old_run / SET_ASIDE).is_dir() and (old_run / "config.json").is_file())
        raise RuntimeError("out of memory")

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", failing_step)
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer_module.train(tiny_config(small_corpus), output=old_run, overwrite=True)
    assert set_aside_seen == [True]  # the old run was aside and the new run's files were in place
    assert contents(old_run) == before


def test_an_interrupted_overwrite_is_refused_until_its_files_are_dealt_with(run_cli, small_corpus, old_run):
    (old_run / SET_ASIDE).mkdir()
    (old_run / SET_ASIDE / "config.json").write_text("{}")
    result = run_cli(
        "train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "2", "--output", old_run, "--overwrite"
    )
    assert result.code != 0 and SET_ASIDE in result.err and result.err.count("\n") == 1
    assert (old_run / SET_ASIDE / "config.json").read_text() == "{}"


def test_resuming_a_run_whose_budget_is_spent_says_how_to_give_it_more(run_cli, old_run):
    before = (old_run / "metrics.jsonl").read_text()
    result = run_cli("train", "--resume", old_run, "--max-minutes", "0.00001")
    assert result.code == 0, result.err
    said = result.out + result.err
    assert "nothing trained" in said and "--max-minutes" in said and "done" not in said
    assert (old_run / "metrics.jsonl").read_text() == before


def test_resuming_a_run_at_its_last_step_says_how_to_train_on(run_cli, old_run):
    result = run_cli("train", "--resume", old_run)
    said = result.out + result.err
    assert result.code == 0 and "nothing trained" in said and "--max-steps" in said and "done" not in said


def test_a_budget_spent_before_the_first_step_says_so_and_keeps_the_run_it_would_replace(
    run_cli, small_corpus, old_run
):
    before = contents(old_run)
    result = run_cli("train", "--dataset", small_corpus, "--max-minutes", "0.0001", "--output", old_run, "--overwrite")
    assert result.code != 0 and "Traceback" not in result.err
    assert "ran out before the first step" in result.err and "--max-minutes" in result.err
    assert contents(old_run) == before


def test_a_new_folder_whose_budget_ran_out_before_the_first_step_is_not_left_half_written(
    run_cli, small_corpus, tmp_path
):
    out = tmp_path / "new-run"
    result = run_cli("train", "--dataset", small_corpus, "--max-minutes", "0.0001", "--output", out)
    assert result.code != 0 and "ran out before the first step" in result.err
    assert not out.exists()  # a rerun with more minutes is not refused by a folder without a checkpoint
