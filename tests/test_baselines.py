"""The word LSTM baselines of benchmarks/baselines/: their vocabularies, the spelling of unknown words,
the scoring of every test token against the shared character count, the training protocol, and a
short run of each system through the held-out benchmark's own command."""

from __future__ import annotations

import itertools
import json
import math
import subprocess

import pytest
import torch

from benchmarks.baselines import word_lstm
from benchmarks.baselines.spelling import SpellingModel
from benchmarks.baselines.word_model import IGNORED, WordLSTM, scoring_columns, stream_nats
from benchmarks.baselines.words import EOS, UNKNOWN_ID, closed_vocabulary, open_vocabulary, tokens_of
from benchmarks.heldout import run as heldout
from benchmarks.heldout.protocol import scored_chars
from conftest import REPO, TINYSHAKESPEARE


def test_tokens_are_each_lines_words_then_eos_one_eos_per_newline_and_per_document_end():
    documents = ["a  b\tc\n\n  d ", "e\n"]
    assert tokens_of(documents) == ["a", "b", "c", EOS, EOS, "d", EOS, "e", EOS, EOS]
    newlines = sum(text.count("\n") for text in documents)
    assert tokens_of(documents).count(EOS) == newlines + len(documents)
    # the characters every system is scored on: each document and its end
    assert scored_chars(documents) == len("a  b\tc\n\n  d ") + 1 + len("e\n") + 1


def test_closed_vocabulary_numbers_train_then_validation_then_test_tokens_in_order_of_first_appearance():
    train, valid, test = tokens_of(["b a\nb"]), tokens_of(["c a"]), tokens_of(["d"])
    vocabulary = closed_vocabulary(train, valid, test)
    assert list(vocabulary.index) == ["b", "a", EOS, "c", "d"]
    assert list(vocabulary.index.values()) == [0, 1, 2, 3, 4]
    assert vocabulary.size == 5
    assert vocabulary.encode(test) == ([4, 2], [])


def test_open_vocabulary_keeps_training_words_seen_twice_and_gives_the_rest_the_unknown_id():
    train = tokens_of(["the cat <unk>\nthe dog <unk>"])  # a literal <unk> in a text is a word like any other
    vocabulary = open_vocabulary(train)
    assert set(vocabulary.index) == {EOS, "the", "<unk>"}
    assert UNKNOWN_ID not in vocabulary.index.values()
    assert sorted(vocabulary.index.values()) == [1, 2, 3]
    assert vocabulary.size == 4
    ids, unknown = vocabulary.encode(train)  # words seen once in training are what <unk> learns from
    assert unknown == ["cat", "dog"]
    assert ids.count(UNKNOWN_ID) == 2
    assert vocabulary.encode(["the", "zebra", EOS]) == ([vocabulary.index["the"], UNKNOWN_ID, 1], ["zebra"])


def test_spelling_model_gives_each_context_a_distribution_and_a_word_the_sum_of_its_characters():
    model = SpellingModel(["hello", "help", "yellow", "hell", "low"], order=4, unseen_char_nats=math.log(3))
    symbols = [*sorted(model.characters), model.end, model.unseen]
    for context in ["", model.begin * 3, model.begin * 2 + "h", "hel", "ell", "zzz", "xlo"]:
        assert sum(model.probability(s, context) for s in symbols) == pytest.approx(1.0)
    expected = 0.0
    context = model.begin * 3
    for symbol in ["h", "e", model.unseen, model.end]:  # "q" was never seen: the unseen symbol and which one
        expected -= math.log(model.probability(symbol, context))
        context = (context + symbol)[1:]
    assert model.nats("heq") == pytest.approx(expected + math.log(3))
    assert model.nats("hello") < model.nats("olleh")  # it reads the context: a unigram model would tie them


def test_spelling_probabilities_of_all_short_words_sum_to_at_most_one_and_nearly_one():
    model = SpellingModel(["ab", "ba", "aab", "b"], order=3)
    words = ("".join(letters) for n in range(11) for letters in itertools.product("ab", repeat=n))
    total = sum(math.exp(-model.nats(word)) for word in words)
    assert 0.9 < total <= 1.0


@pytest.mark.parametrize(("length", "batch"), [(2, 10), (9, 10), (11, 10), (100, 10), (101, 3), (77, 1)])
def test_scoring_columns_make_every_token_after_the_first_a_target_once_after_the_token_before_it(length, batch):
    ids = list(range(1000, 1000 + length))
    inputs, targets = scoring_columns(ids, batch)
    assert inputs.shape == targets.shape and inputs.size(1) == min(batch, length - 1)
    kept = targets.t().flatten() != IGNORED  # column by column: the stream's order
    assert targets.t().flatten()[kept].tolist() == ids[1:]
    assert (targets.t().flatten()[kept] - inputs.t().flatten()[kept]).eq(1).all()


def test_stream_nats_in_columns_equal_each_column_read_alone_through_several_bptt_chunks():
    torch.manual_seed(0)
    model = WordLSTM(13)
    ids = torch.randint(13, (1 + 3 * 80,)).tolist()  # three columns of 80 targets: three BPTT chunks each
    expected = 0.0
    model.eval()
    with torch.no_grad():
        for column in range(3):
            piece = torch.tensor(ids[column * 80 : column * 80 + 81])
            logits, _ = model(piece[:-1].view(-1, 1))
            expected += torch.nn.functional.cross_entropy(logits[:, 0], piece[1:], reduction="sum").item()
    assert stream_nats(model, ids, batch=3) == pytest.approx(expected, rel=1e-5)


def _uniform(model: WordLSTM) -> WordLSTM:
    with torch.no_grad():  # all-zero logits: every token costs ln(vocabulary size)
        model.output.weight.zero_()
        model.output.bias.zero_()
    return model


def test_an_unseen_test_word_costs_the_unknown_token_plus_exactly_its_spelling():
    train_docs = ["the cat sat\nthe cat ran\nthe end"]
    known = word_lstm.prepare("open", train_docs, ["the cat"], ["the cat"])
    unseen = word_lstm.prepare("open", train_docs, ["the cat"], ["the zebra"])
    assert unseen.test_unknown == ["zebra"]
    model = _uniform(WordLSTM(unseen.vocabulary.size))
    tokens = 3  # the, zebra, <eos>
    lstm_nats, spelling_nats = word_lstm.nats_on_test(model, unseen)
    assert lstm_nats == pytest.approx(tokens * math.log(unseen.vocabulary.size), rel=1e-5)
    # the spelling model is fitted on the distinct training words: "z", "b" are new, "e", "r", "a" are not
    spelling = SpellingModel({"the", "cat", "sat", "ran", "end"}, unseen_char_nats=math.log(2))
    assert spelling_nats == pytest.approx(spelling.nats("zebra"))
    assert word_lstm.nats_on_test(model, known) == (pytest.approx(lstm_nats, rel=1e-5), 0.0)


def test_the_closed_vocabulary_knows_every_test_word():
    data = word_lstm.prepare("closed", ["the cat"], ["a dog"], ["the zebra"])
    assert data.test_unknown == [] and data.spelling is None
    assert data.vocabulary.size == 6  # the, cat, <eos>, a, dog, zebra


def _scripted_validation(monkeypatch, losses: list[float]) -> list[dict]:
    """validation_loss returns `losses` in turn; returns the weights the model had at each call."""
    seen = []

    def validation_loss(model, valid_ids):
        seen.append({name: value.clone() for name, value in model.state_dict().items()})
        return losses[len(seen) - 1]

    monkeypatch.setattr(word_lstm, "validation_loss", validation_loss)
    return seen


def _step_clock():
    """A clock that advances one second each time it is read: the loop reads it once a step."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def _same(weights: dict, model: WordLSTM) -> bool:
    return all(torch.equal(weights[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize(("end_loss", "scored_epoch"), [(1.5, None), (2.5, 1)])
def test_training_stops_mid_epoch_at_the_deadline_and_keeps_the_better_of_the_end_and_the_best_checkpoint(
    monkeypatch, end_loss, scored_epoch
):
    torch.manual_seed(0)
    train_ids = torch.randint(9, (20 * (35 * 4 + 1),)).tolist()  # 4 steps an epoch
    seen = _scripted_validation(monkeypatch, [2.0, end_loss])
    model = WordLSTM(9)
    # clock reads: the start, 4 steps, the epoch's end, then 2 steps of epoch 2 and the deadline at the third
    training = word_lstm.train(model, train_ids, [0, 1, 2], seconds=8, clock=_step_clock())
    assert training["steps"] == 6 and training["epochs_completed"] == 1 and training["stopped_by"] == "deadline"
    assert training["end_valid_nats_per_token"] == end_loss
    if scored_epoch is None:
        assert training["scored"] == "the model at the end" and _same(seen[1], model)
    else:
        assert training["scored"] == "the checkpoint of epoch 1" and _same(seen[0], model)
        assert not _same(seen[1], model)


def test_the_learning_rate_is_divided_by_4_after_an_epoch_that_does_not_improve(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(word_lstm, "EPOCHS", 3)
    _scripted_validation(monkeypatch, [2.0, 2.5, 1.0])
    training = word_lstm.train(WordLSTM(9), torch.randint(9, (20 * 37,)).tolist(), [0, 1], seconds=math.inf)
    assert [epoch["lr"] for epoch in training["epochs"]] == [20.0, 20.0, 5.0]
    assert training["stopped_by"] == "epochs" and training["scored"] == "the model at the end"


def test_bad_input_is_one_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match="^error: .*does not exist"):
        word_lstm.main(
            [
                "--vocabulary",
                "open",
                "--data",
                str(tmp_path / "missing"),
                "--minutes",
                "1",
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
    _write_corpus(tmp_path / "short", ["a b"], ["a"], ["b"])
    with pytest.raises(SystemExit, match="^error: the training split of .* is too short"):
        word_lstm.main(
            [
                "--vocabulary",
                "closed",
                "--data",
                str(tmp_path / "short"),
                "--minutes",
                "1",
                "--out",
                str(tmp_path / "r.json"),
            ]
        )
    with pytest.raises(SystemExit):
        word_lstm.main(["--vocabulary", "open", "--data", str(tmp_path), "--minutes", "0", "--out", "r.json"])
    assert "--minutes must be positive" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def _write_corpus(folder, train, valid, test) -> None:
    folder.mkdir(parents=True)
    for split, documents in (("train", train), ("validation", valid), ("test", test)):
        lines = (json.dumps({"text": text}) + "\n" for text in documents)
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize("system", ["word-closed", "word-open"])
def test_each_system_runs_a_second_through_the_heldout_benchmarks_command(tmp_path, system):
    lines = TINYSHAKESPEARE.read_text(encoding="utf-8").split("\n\n")
    test_docs = lines[220:240] + ["Zyzzyva quoth the xylophonist."]  # words no training text holds
    _write_corpus(tmp_path / "tiny", lines[:200], lines[200:220], test_docs)
    commands = heldout.commands_for(system, [], tmp_path / "tiny", 1 / 60, tmp_path / "run")
    assert len(commands) == 1
    done = subprocess.run(
        commands[0], cwd=REPO, env=heldout.job_environment(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = heldout.last_json_line(done.stdout)
    assert result == {
        k: v
        for k, v in json.loads((tmp_path / "run" / "result.json").read_text()).items()
        if not isinstance(v, (list, dict))
    }
    assert result["test_chars"] == scored_chars(test_docs)
    assert 0 < result["test_bits_per_char"] < 20
    assert result["test_bits_per_char"] == pytest.approx(
        (result["test_lstm_nats"] + result["test_spelling_nats"]) / result["test_chars"] / math.log(2)
    )
    assert result["train_seconds"] < 30 and result["steps"] > 0
    if system == "word-open":
        assert result["test_unknown_words"] >= 3 and result["test_spelling_nats"] > 0
    else:
        assert result["test_unknown_words"] == 0 and result["test_spelling_nats"] == 0
