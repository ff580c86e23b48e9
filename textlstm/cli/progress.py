"""A rich progress display for training: a bar with step, loss, validation loss, tokens/s, time left."""

from __future__ import annotations

import math

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from textlstm.training.trainer import Reporter


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class RichReporter(Reporter):
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.progress = Progress(
            TextColumn("step {task.completed:>6.0f}{task.fields[of_total]}"),
            BarColumn(),
            TextColumn(
                "loss {task.fields[loss]}  val {task.fields[valid]} (best {task.fields[best]})  "
                "{task.fields[rate]} tok/s"
            ),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.task = None
        self.best_valid = None

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def ready(self, model, config, best_valid_loss: float) -> None:
        from textlstm.model.summary import layer_rows, summary_table

        if math.isfinite(best_valid_loss):  # a resumed run
            self.best_valid = best_valid_loss
        rows = layer_rows(model, masked=config.data.batching == "documents")
        self.console.print(summary_table(rows, title="model"))

    def start(self, total_steps: int | None, first_step: int) -> None:
        self.progress.start()
        of_total = "" if total_steps is None else f"/{total_steps}"
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=first_step, of_total=of_total, loss="-", valid="-", best="-", rate="-"
        )

    def step(self, step: int, loss: float, tokens_per_sec: float, lr: float) -> None:
        self.progress.update(self.task, completed=step, loss=f"{loss:.3f}", rate=f"{tokens_per_sec:,.0f}")

    def evaluated(self, record: dict) -> None:
        if self.best_valid is None or record["valid_loss"] < self.best_valid:
            self.best_valid = record["valid_loss"]
        if self.task is not None:
            self.progress.update(self.task, valid=f"{record['valid_loss']:.3f}", best=f"{self.best_valid:.3f}")
        label = "final" if record["final"] else "eval "
        self.console.print(
            f"{label} step {record['step']:>6}  train {_fmt(record['train_loss'], '.4f')}  "
            f"valid {record['valid_loss']:.4f}  ppl {record['valid_perplexity']:.2f}  "
            f"bpc {_fmt(record['valid_bits_per_char'], '.4f')}  {_fmt(record['tokens_per_sec'], ',.0f')} tok/s  "
            f"{record['elapsed_sec']:.0f}s",
            highlight=False,
        )

    def sampled(self, step: int, text: str) -> None:
        self.console.print(f"sample step {step:>6}", highlight=False)
        lines = text.splitlines() or [""]
        self.console.print(
            Text("\n".join(f"  | {line}" for line in lines)), highlight=False
        )  # Text: brackets stay text

    def stop(self) -> None:
        self.progress.stop()
