"""The training progress bar shows the best validation loss next to the current one."""

import io
import math

from rich.console import Console

from conftest import tiny_char_model
from textlstm.cli.progress import RichReporter


def record(step: int, valid_loss: float) -> dict:
    return {
        "step": step,
        "train_loss": None,
        "valid_loss": valid_loss,
        "valid_perplexity": math.exp(valid_loss),
        "valid_bits_per_char": None,
        "tokens_per_sec": None,
        "elapsed_sec": 1.0,
        "final": False,
    }


def shown(reporter: RichReporter) -> tuple[str, str]:
    fields = reporter.progress.tasks[0].fields
    return fields["valid"], fields["best"]


def test_best_validation_loss_so_far_beside_the_current_one():
    model, _, config = tiny_char_model()
    reporter = RichReporter(Console(file=io.StringIO()))
    reporter.ready(model, config, math.inf)
    reporter.start(10, 0)
    reporter.evaluated(record(2, 2.5))
    reporter.evaluated(record(4, 2.0))
    reporter.evaluated(record(6, 2.25))
    assert shown(reporter) == ("2.250", "2.000")
    reporter.stop()


def test_a_resumed_run_starts_from_its_saved_best():
    model, _, config = tiny_char_model()
    reporter = RichReporter(Console(file=io.StringIO()))
    reporter.ready(model, config, 1.75)
    reporter.start(10, 4)
    reporter.evaluated(record(6, 2.0))
    assert shown(reporter) == ("2.000", "1.750")
    reporter.stop()
