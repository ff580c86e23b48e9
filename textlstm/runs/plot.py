"""Training curves of one or more runs on one figure: loss and bits per character, against steps and
against time. Needs matplotlib (`pip install "textlstm[plot]"`).
"""

from __future__ import annotations

from pathlib import Path

from textlstm.errors import TextlstmError
from textlstm.fileio import atomic_write
from textlstm.runs.saved_runs import Run

INSTALL_HINT = 'plotting needs matplotlib: pip install "textlstm[plot]" (or pip install matplotlib)'


def plot_runs(runs: list[Run], output: str | Path, title: str | None = None) -> Path:
    """Draw the curves of `runs` into `output` (format from its extension: png, pdf, svg, ...)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TextlstmError(INSTALL_HINT) from None
    output = Path(output)
    fmt = output.suffix.lstrip(".").lower()
    for run in runs:
        if not run.records:
            raise TextlstmError(f"run {run.folder} has no evaluations yet: nothing to plot")
    labels = _labels(runs)
    seconds = max(r["elapsed_sec"] for run in runs for r in run.records if r.get("elapsed_sec") is not None)
    time_unit, time_scale = ("minutes", 60.0) if seconds > 120 else ("seconds", 1.0)

    figure = Figure(figsize=(12, 8), layout="constrained")
    axes = figure.subplots(2, 2, sharey="row")
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for run, label, color in zip(runs, labels, colors):
        for column, (key, scale) in enumerate((("step", 1.0), ("elapsed_sec", time_scale))):
            loss_axis, bpc_axis = axes[0][column], axes[1][column]
            x, y = _series(run.records, key, "train_loss", scale)
            loss_axis.plot(x, y, color=color, linestyle="--", linewidth=1.2, alpha=0.8)
            x, y = _series(run.records, key, "valid_loss", scale)
            loss_axis.plot(x, y, color=color, marker="o", markersize=3, linewidth=1.8, label=label)
            bits_key = _bits_key(run)
            x, y = _series(run.records, key, bits_key, scale)
            bits_label = label if bits_key == "valid_bits_per_char" else f"{label} (bits per token)"
            bpc_axis.plot(x, y, color=color, marker="o", markersize=3, linewidth=1.8, label=bits_label)

    for column, xlabel in enumerate(("training step", f"training time ({time_unit})")):
        axes[0][column].set_title(f"loss against {'steps' if column == 0 else 'time'}")
        axes[1][column].set_title(f"validation bits per character against {'steps' if column == 0 else 'time'}")
        axes[1][column].set_xlabel(xlabel)
        for row in (0, 1):
            axes[row][column].grid(True, alpha=0.3)
    axes[0][0].set_ylabel("cross-entropy (nats per token)")
    per_token = any(_bits_key(run) != "valid_bits_per_char" for run in runs)
    axes[1][0].set_ylabel("bits per character" + (" (or per token, where marked)" if per_token else ""))
    _legends(axes, figure)
    figure.suptitle(
        title or ("training curves: " + ", ".join(labels) if len(runs) == 1 else "training curves"), fontsize=14
    )
    try:
        atomic_write(output, lambda tmp: figure.savefig(tmp, format=fmt or "png", dpi=120))
    except ValueError as error:  # an extension matplotlib cannot write
        raise TextlstmError(f"cannot write {output}: {error}") from None
    except OSError as error:
        raise TextlstmError(f"cannot write {output}: {error.strerror or error}") from None
    return output


def _series(records: list[dict], x_key: str, y_key: str, x_scale: float) -> tuple[list[float], list[float]]:
    points = [(r[x_key] / x_scale, r[y_key]) for r in records if r.get(x_key) is not None and r.get(y_key) is not None]
    return [x for x, _ in points], [y for _, y in points]


def _bits_key(run: Run) -> str:
    """Bits per character where the run recorded it; evaluations that scored only part of the
    validation text (--eval-tokens) record bits per token alone."""
    if any(r.get("valid_bits_per_char") is not None for r in run.records):
        return "valid_bits_per_char"
    return "valid_bits_per_token"


def _labels(runs: list[Run]) -> list[str]:
    """Run folder names; the whole path where two runs share a name."""
    names = [run.name for run in runs]
    return [str(run.folder) if names.count(run.name) > 1 else run.name for run in runs]


def _legends(axes, figure) -> None:
    from matplotlib.lines import Line2D

    axes[0][0].legend(title="run (validation)", fontsize="small")
    axes[1][0].legend(fontsize="small")
    styles = [
        Line2D([], [], color="0.3", marker="o", markersize=3, linewidth=1.8, label="validation"),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.2, label="training (mean since the last evaluation)"),
    ]
    axes[0][1].legend(handles=styles, fontsize="small")
