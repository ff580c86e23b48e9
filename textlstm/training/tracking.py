"""Following a run beyond metrics.jsonl: TensorBoard (--log-to) and text samples (--sample-every).

The trainer calls a Tracker when the run starts (with its settings resolved), after each evaluation
and each sample, and when the run ends. `Tracker` itself does nothing: it stands for --log-to none
and for every process but process 0, the only one that writes.

Samples are written by a function handed to the trainer (training does not import generation:
`textlstm train` passes one built on the generation API); each is seeded from the run's seed and
its step alone, so sampling never draws from the random numbers training uses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from textlstm.config import RunConfig
from textlstm.errors import TextlstmError

TENSORBOARD_FOLDER = "tensorboard"  # in the run folder: tensorboard --logdir RUN/tensorboard
SAMPLES = "samples.jsonl"  # in the run folder: one {"step", "text"} per sample
INSTALL_HINT = '--log-to tensorboard needs the tensorboard package: pip install "textlstm[tracking]"'
# The figures the hparams dashboard shows beside each run's settings.
HPARAM_METRICS = ("valid_loss", "valid_perplexity", "valid_bits_per_char", "train_loss")


class Tracker:
    """No tracking."""

    def start(self, config: RunConfig) -> None: ...
    def evaluated(self, record: dict) -> None: ...
    def sampled(self, step: int, text: str) -> None: ...
    def close(self) -> None: ...


def tracker_for(log_to: str, run_folder: Path, writes: bool) -> Tracker:
    """The tracker --log-to names, writing into `run_folder` if `writes` (process 0). A missing
    package is reported on every process, at once: before any time goes into the data."""
    if log_to == "none":
        return Tracker()
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401 (imports tensorboard)
    except ImportError:
        raise TextlstmError(INSTALL_HINT) from None
    return TensorBoardTracker(run_folder / TENSORBOARD_FOLDER) if writes else Tracker()


class TensorBoardTracker(Tracker):
    """Each number of an evaluation record as a scalar at its step, the run's settings as hparams,
    each sample as text. A resumed run adds an event file to the same folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writer = None

    def start(self, config: RunConfig) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.writer = SummaryWriter(str(self.folder))
        experiment, settings, _ = hparams(flat_settings(config), dict.fromkeys(HPARAM_METRICS))
        self.writer.file_writer.add_summary(experiment)  # the end-of-session summary is left out: it says "success"
        self.writer.file_writer.add_summary(settings)

    def evaluated(self, record: dict) -> None:
        for name, value in record.items():
            if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, record["step"])
        self.writer.flush()  # evaluations are rare: TensorBoard shows each as soon as it is made

    def sampled(self, step: int, text: str) -> None:
        self.writer.add_text("sample", as_code_block(text), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def as_code_block(text: str) -> str:
    """`text` as an indented Markdown code block: TensorBoard renders text as Markdown, which would
    join its lines and read its * and _ as emphasis."""
    return "\n".join("    " + line for line in text.split("\n"))


def flat_settings(config: RunConfig) -> dict:
    """The run's settings as {"model.hidden_size": 256, ...}: numbers, text and bools as they are,
    lists as JSON text; None (not given) left out."""
    flat = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                add(f"{prefix}.{name}" if prefix else name, inner)
        elif isinstance(value, (list, tuple)):
            flat[prefix] = json.dumps(value)
        elif value is not None:
            flat[prefix] = value

    add("", dataclasses.asdict(config))
    return flat


def sample_seed(run_seed: int, step: int) -> int:
    """The seed of the sample at `step`: the same for a resumed run as for an uninterrupted one."""
    return (run_seed * 1_000_003 + step) % 2**63


def append_sample(run_folder: Path, step: int, text: str) -> None:
    with open(run_folder / SAMPLES, "a", encoding="utf-8") as samples:
        samples.write(json.dumps({"step": step, "text": text}) + "\n")
