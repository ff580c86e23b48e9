"""The model card of a run folder, README.md: metadata the Hub's own parser reads without errors
(huggingface_hub.ModelCard, ignore_metadata_errors=False), and a page whose figures, sample and
usage lines are the run's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from conftest import TINY_MODEL, write_tiny_checkpoint
from textlstm.runs import checkpoint as ckpt
from textlstm.runs.model_card import SAMPLE_TOKENS, write_model_card


def test_training_writes_a_card_the_hub_parses_with_a_sample_at_the_end(small_corpus, tmp_path, run_cli):
    import textlstm.runs.model_card
    from textlstm.training import trainer

    cards = []
    written = textlstm.runs.model_card.write_model_card

    def keep_the_card(folder, **options):
        written(folder, **options)
        cards.append((options.get("sample") is not None, (Path(folder) / ckpt.MODEL_CARD).read_text()))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.model_card, "write_model_card", keep_the_card)
        result = run_cli(
            "train", "--dataset", small_corpus, *TINY_MODEL, "--max-steps", "4", "--eval-every", "2", "--output", "run"
        )
    assert result.code == 0, result.err
    assert [with_sample for with_sample, _ in cards] == [False, False, True]  # each evaluation, then the end
    assert all("Sample: at the end of training." in text for _, text in cards[:2])

    run = tmp_path / "run"
    card = ModelCard.load(run / ckpt.MODEL_CARD, ignore_metadata_errors=False)
    assert (card.data.library_name, card.data.pipeline_tag) == ("textlstm", "text-generation")
    assert {"text-generation", "lstm", "char-tokenizer"} <= set(card.data.tags)
    assert card.data.datasets is None  # a local corpus
    best = min(
        (json.loads(line) for line in (run / ckpt.METRICS).read_text().splitlines()), key=lambda r: r["valid_loss"]
    )
    figures = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert figures == {"bpc": round(best["valid_bits_per_char"], 4), "perplexity": round(best["valid_perplexity"], 4)}
    assert {result.dataset_type for result in card.data.eval_results} == {"small.txt"}
    assert "small.txt" in card.text and str(small_corpus.parent) not in card.text  # named, its path not shown

    greedy = run_cli(
        "generate", "--checkpoint", run, "--prompt", "", "--temperature", "0", "--max-tokens", str(SAMPLE_TOKENS)
    )
    sample = re.search(r"```text\n(.*?)\n```", card.text, re.S).group(1)
    assert greedy.out.removesuffix("\n") == sample
    assert (
        "textlstm generate --checkpoint hf://USER/NAME" in card.text and 'textlstm.load("hf://USER/NAME")' in card.text
    )


def test_a_card_names_a_hub_corpus_in_its_metadata_and_the_pushed_repository_in_its_usage(tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run")
    config = json.loads((run / ckpt.CONFIG).read_text())
    config["data"].update(dataset="bob/poems", valid_split="test")
    (run / ckpt.CONFIG).write_text(json.dumps(config))
    records = [
        {"step": 10, "valid_loss": 1.5, "valid_perplexity": 4.4817, "valid_bits_per_char": None},
        {"step": 20, "valid_loss": 1.2, "valid_perplexity": 3.3201, "valid_bits_per_char": 1.7312},
    ]
    (run / ckpt.METRICS).write_text("".join(json.dumps(record) + "\n" for record in records))

    write_model_card(run, repo_id="alice/poet")
    card = ModelCard.load(run / ckpt.MODEL_CARD, ignore_metadata_errors=False)
    assert card.data.datasets == ["bob/poems"]
    results = {result.metric_type: result for result in card.data.eval_results}
    assert {kind: result.metric_value for kind, result in results.items()} == {"bpc": 1.7312, "perplexity": 3.3201}
    assert {(result.dataset_type, result.dataset_split) for result in results.values()} == {("bob/poems", "test")}
    assert card.data.model_name == "poet"
    assert "textlstm generate --checkpoint hf://alice/poet" in card.text and "USER/NAME" not in card.text


def test_a_card_before_any_evaluation_has_no_results(tmp_path):
    run = write_tiny_checkpoint(tmp_path / "run")
    write_model_card(run)
    card = ModelCard.load(run / ckpt.MODEL_CARD, ignore_metadata_errors=False)
    assert card.data.eval_results is None and "No evaluation recorded yet." in card.text
