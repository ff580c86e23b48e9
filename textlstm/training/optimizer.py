"""The optimizer: AdamW, with weight decay on the weight matrices only.

Decay is meant to keep the matrices that mix inputs small (the LSTM's W_ih and W_hh, the output
layer, the projection); biases, the embedding (and so a tied output layer) and any other 1-D
parameter are left out of it, the usual practice. Measured against decay on every parameter at
equal steps, the two ended within run-to-run noise of each other
(benchmarks/experiments/e2026_11_25_weight_decay_groups).
"""

from __future__ import annotations

import torch

from textlstm.config import TrainConfig

BETAS = (0.9, 0.99)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: the weight matrices with `weight_decay`, everything else without.

    A tied output layer is the embedding matrix, so it is not decayed either.
    """
    embedding = getattr(model, "embedding", None)
    not_decayed = {id(embedding.weight)} if embedding is not None else set()
    decay, no_decay = [], []
    for parameter in model.parameters():  # each shared parameter once
        if parameter.ndim >= 2 and id(parameter) not in not_decayed:
            decay.append(parameter)
        else:
            no_decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW for `model`. A config that still says auto (None) for the learning rate or weight decay (outside
    training) gives a rate of 0 until a step sets one (step.py sets each step's) and no weight decay."""
    lr = config.lr if config.lr is not None else 0.0
    return torch.optim.AdamW(parameter_groups(model, config.weight_decay or 0.0), lr=lr, betas=BETAS)


def load_optimizer_state(optimizer: torch.optim.AdamW, model: torch.nn.Module, state: dict) -> None:
    """Load a saved optimizer state, including one saved before the parameters were split into
    decayed and undecayed groups (one group, the parameters in `model.parameters()` order)."""
    if len(state["param_groups"]) == 1 and len(optimizer.param_groups) == 2:
        state = _split_single_group(optimizer, model, state)
    optimizer.load_state_dict(state)


def _split_single_group(optimizer: torch.optim.AdamW, model: torch.nn.Module, state: dict) -> dict:
    # A state dict numbers the parameters 0, 1, ... through its groups in order.
    old_index = {id(p): i for i, p in enumerate(model.parameters())}
    old_group = state["param_groups"][0]
    if len(old_group["params"]) != len(old_index):
        raise ValueError("the saved optimizer state holds a different number of parameters")
    groups, per_parameter, new_index = [], {}, 0
    for group in optimizer.param_groups:
        indices = []
        for parameter in group["params"]:
            saved = state["state"].get(old_group["params"][old_index[id(parameter)]])
            if saved is not None:
                per_parameter[new_index] = saved
            indices.append(new_index)
            new_index += 1
        groups.append({**old_group, "weight_decay": group["weight_decay"], "params": indices})
    return {"state": per_parameter, "param_groups": groups}
