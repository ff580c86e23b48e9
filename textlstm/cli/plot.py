"""`textlstm plot`: training curves of runs as a picture."""

from __future__ import annotations

import click


@click.command()
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    default="curves.png",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Picture to write; the format follows the extension (png, pdf, svg).",
)
@click.option("--title", help="Title of the figure.")
def plot(runs, output, title) -> None:
    """Training and validation loss and bits per character of RUNS (folders, or names under
    checkpoints/) against steps and against time, on one figure. Needs matplotlib."""
    from textlstm.runs.plot import plot_runs
    from textlstm.runs.saved_runs import find_run, read_run

    written = plot_runs([read_run(find_run(run)) for run in runs], output, title=title)
    click.echo(f"wrote {written}")
