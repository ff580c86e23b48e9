"""Fit the planner's size rule on the runs of fit_plan.py, and check it leaving one corpus out.

The rule (textlstm/training/size_rule.py): validation bits/char = E(corpus) + A / N^alpha +
B / D'^beta, N the LSTM's weights in millions, D' the training tokens in millions discounted for
repeated epochs with R. One E per corpus; A, alpha, B, beta shared, fitted by least squares
(scipy). R is not fitted: REPEAT_R, the value Muennighoff et al. fitted for repeated data
("Scaling Data-Constrained Language Models", 2023, R*_D = 15.4); fitted here, on 16 runs, it came
out 1.03 and its leave-one-out choices were worse (5 of 8 equal-time pairs right, against 7 of 8).
Leave-one-out: fit without a corpus, then ask that fit which shape wins on the left-out corpus at the
token counts its fitting runs had, and compare with what the runs measured. The corpora's sizes are
the ones the runs trained on, frozen in settings.toml beside this script.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from textlstm.hardware.threads import lstm_work_per_step

REPEAT_R = 15.0
SETTINGS = Path(__file__).resolve().parent / "settings.toml"


def train_tokens(corpus: str) -> int:
    """The corpus's training characters, documents' end symbols included (a char model's tokens)."""
    train = tomllib.loads(SETTINGS.read_text())["corpora"][corpus]
    return train["train_chars"] + train["train_documents"]


def effective(tokens: np.ndarray, text: np.ndarray, repeat: float) -> np.ndarray:
    epochs = tokens / text
    discounted = text * (1 + repeat * (1 - np.exp(-(epochs - 1) / repeat)))
    return np.where(epochs <= 1, tokens, discounted)


def model(shared: np.ndarray, weights: np.ndarray, tokens: np.ndarray, text: np.ndarray) -> np.ndarray:
    log_a, alpha, log_b, beta = shared
    seen = effective(tokens, text, REPEAT_R) / 1e6
    return math.exp(log_a) / weights**alpha + math.exp(log_b) / seen**beta


def fit(runs: list[dict]) -> dict:
    corpora = sorted({run["corpus"] for run in runs})
    index = np.array([corpora.index(run["corpus"]) for run in runs])
    weights = np.array([lstm_work_per_step(run["embedding"], run["hidden"], run["layers"], 1) / 1e6 for run in runs])
    tokens = np.array([float(run["tokens"]) for run in runs])
    text = np.array([float(train_tokens(run["corpus"])) for run in runs])
    loss = np.array([run["valid_bits_per_char"] for run in runs])

    def residuals(params):
        return params[index] + model(params[len(corpora) :], weights, tokens, text) - loss

    start = np.concatenate([np.full(len(corpora), loss.min() - 0.3), [math.log(0.3), 0.5, math.log(0.5), 0.5]])
    lower = np.concatenate([np.full(len(corpora), -np.inf), [-10, 0.05, -10, 0.05]])
    upper = np.concatenate([np.full(len(corpora), np.inf), [10, 2.0, 10, 2.0]])
    result = least_squares(residuals, start, bounds=(lower, upper))
    log_a, alpha, log_b, beta = result.x[len(corpora) :]
    return {
        "A": math.exp(log_a),
        "alpha": alpha,
        "B": math.exp(log_b),
        "beta": beta,
        "R": REPEAT_R,
        "E": dict(zip(corpora, result.x[: len(corpora)])),
        "rms": float(np.sqrt(np.mean(result.fun**2))),
        "shared": result.x[len(corpora) :],
    }


def predicted(rule: dict, run: dict) -> float:
    weights = np.array([lstm_work_per_step(run["embedding"], run["hidden"], run["layers"], 1) / 1e6])
    return float(
        model(
            rule["shared"], weights, np.array([float(run["tokens"])]), np.array([float(train_tokens(run["corpus"]))])
        )[0]
    )


def report(runs: list[dict], corpora: list[str]) -> None:
    runs = [run for run in runs if run["exit"] == 0 and run["corpus"] in corpora]
    rule = fit(runs)
    print(
        f"all corpora: A {rule['A']:.4f}, alpha {rule['alpha']:.3f}, B {rule['B']:.4f}, beta {rule['beta']:.3f}, "
        f"R {rule['R']:.2f}; rms residual {rule['rms']:.4f} bits/char over {len(runs)} runs"
    )
    print("\n| corpus | shape | tokens | epochs | dropout | valid bits/char | fitted |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for run in sorted(runs, key=lambda r: (r["corpus"], r["hidden"], r["tokens"])):
        fitted = rule["E"][run["corpus"]] + predicted(rule, run)
        epochs = run["tokens"] / train_tokens(run["corpus"])
        print(
            f"| {run['corpus']} | {run['shape']} | {run['tokens']:,} | {epochs:.1f} | "
            f"{run['dropout']:g} | {run['valid_bits_per_char']:.4f} | {fitted:.4f} |"
        )
    print("\nLeave one corpus out: the rule fitted on the others, asked which shape wins at each token count pairing")
    print(
        "(equal time: the pairs at about the same minutes of one core, the small shape reading four times the tokens)"
    )
    print("| left out | A | alpha | B | beta | pair (tokens of each) | equal time | rule picks | runs measured |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |")
    for corpus in sorted({run["corpus"] for run in runs}):
        others = [run for run in runs if run["corpus"] != corpus]
        if len({run["corpus"] for run in others}) < 2:
            continue
        held = fit(others)
        mine = sorted((run for run in runs if run["corpus"] == corpus), key=lambda r: (r["hidden"], r["tokens"]))
        for small in (r for r in mine if r["hidden"] == min(x["hidden"] for x in mine)):
            for large in (r for r in mine if r["hidden"] == max(x["hidden"] for x in mine)):
                picks = small["shape"] if predicted(held, small) <= predicted(held, large) else large["shape"]
                measured = (
                    small["shape"] if small["valid_bits_per_char"] <= large["valid_bits_per_char"] else large["shape"]
                )
                equal = "yes" if abs(small["tokens"] / large["tokens"] - 4) < 0.1 else ""
                print(
                    f"| {corpus} | {held['A']:.3f} | {held['alpha']:.2f} | {held['B']:.3f} | {held['beta']:.2f} | "
                    f"{small['shape']} {small['tokens'] / 1e6:.1f}M vs {large['shape']} {large['tokens'] / 1e6:.1f}M | "
                    f"{equal} | {picks} | "
                    f"{measured} ({small['valid_bits_per_char']:.3f} vs {large['valid_bits_per_char']:.3f}) |"
                )
