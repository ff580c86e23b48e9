import pytest
import torch

from textlstm.config import ModelConfig, TrainConfig
from textlstm.model.network import LSTMLanguageModel
from textlstm.training.optimizer import build_optimizer, load_optimizer_state, parameter_groups


def make_model(**overrides) -> LSTMLanguageModel:
    torch.manual_seed(0)
    settings = dict(vocab_size=30, embedding_size=8, hidden_size=12, layers=2)
    settings.update(overrides)
    return LSTMLanguageModel(ModelConfig(**settings))


def decayed_names(model) -> set[str]:
    decayed = {id(p) for p in parameter_groups(model, 0.1)[0]["params"]}
    return {name for name, p in model.named_parameters() if id(p) in decayed}


def test_only_weight_matrices_are_decayed():
    model = make_model()
    assert decayed_names(model) == {
        "lstm.weight_ih_l0",
        "lstm.weight_hh_l0",
        "lstm.weight_ih_l1",
        "lstm.weight_hh_l1",
        "decoder.weight",
    }
    groups = parameter_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_tied_output_layer_is_the_embedding_and_is_not_decayed():
    model = make_model(tie_weights=True, embedding_size=8, hidden_size=12)
    names = decayed_names(model)
    assert "projection.weight" in names
    assert not {"embedding.weight", "decoder.weight"} & names


def test_the_adaptive_softmax_matrices_are_decayed():
    model = make_model(vocab_size=300, output_layer="adaptive", adaptive_cutoffs=[50])
    assert any(name.startswith("adaptive.head") for name in decayed_names(model))


def test_a_step_without_gradient_shrinks_the_matrices_and_nothing_else():
    model = make_model()
    optimizer = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.5))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.5) if name in decayed_names(model) else before[name]
        torch.testing.assert_close(p.detach(), expected, msg=name)


def test_an_optimizer_state_saved_with_one_group_loads_into_the_two():
    model = make_model()
    old = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ids = torch.randint(2, 30, (2, 6))
    for _ in range(2):
        old.zero_grad()
        loss, count, _ = model.loss(ids, ids)
        loss.backward()
        old.step()
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.01))
    load_optimizer_state(optimizer, model, old.state_dict())
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    for p in model.parameters():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizer.state[p][key], old.state[p][key])


def test_an_optimizer_state_of_another_model_is_refused():
    small, large = make_model(), make_model(layers=3)
    state = torch.optim.AdamW(small.parameters()).state_dict()
    with pytest.raises(ValueError):
        load_optimizer_state(build_optimizer(large, TrainConfig()), large, state)
