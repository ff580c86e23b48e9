"""`textlstm runs`: the runs under checkpoints/ as a table, newest first."""

from __future__ import annotations

import json

import click


@click.command()
@click.option(
    "--root",
    default="checkpoints",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder holding the run folders.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list on stdout instead of a table.")
def runs(root, as_json) -> None:
    """The runs under checkpoints/: name, corpus, tokenizer, size, steps, best validation bits per
    character and date, newest first."""
    from textlstm.runs.saved_runs import list_runs

    found = list_runs(root)
    rows = [_row(run) for run in found]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo(f"no runs under {root}/: train one with `textlstm train`")
        return
    _print_table(rows)


def _row(run) -> dict:
    best = run.best or {}
    return {
        "name": run.name,
        "corpus": run.corpus,
        "tokenizer": run.tokenizer,
        "parameters": run.parameters,
        "steps": run.steps,
        "best_valid_bits_per_char": best.get("valid_bits_per_char"),
        "date": run.modified.isoformat(timespec="seconds"),
        "problem": run.problem,
    }


def _print_table(rows: list[dict]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(
        box=box.SIMPLE_HEAD,
        caption="bpc: bits per character of the validation text, best evaluation",
        caption_justify="left",
    )
    table.add_column("name", overflow="fold", min_width=12)
    table.add_column("corpus", overflow="fold", min_width=12)
    table.add_column("tokenizer", no_wrap=True)
    for column in ("size", "steps", "bpc"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("date", no_wrap=True)
    for row in rows:
        if row["problem"]:
            table.add_row(
                row["name"],
                Text(f"unreadable config.json (textlstm info {row['name']} says why)", style="red"),
                "",
                "",
                "",
                "",
                _date(row["date"]),
            )
            continue
        table.add_row(
            row["name"],
            row["corpus"],
            row["tokenizer"],
            _size(row["parameters"]),
            "-" if row["steps"] is None else f"{row['steps']:,}",
            "-" if row["best_valid_bits_per_char"] is None else f"{row['best_valid_bits_per_char']:.4f}",
            _date(row["date"]),
        )
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or redirected: one line per run rather than 80 columns
        console.width = max(console.width, 160)
    console.print(table)


def _size(parameters: int) -> str:
    if parameters >= 1e6:
        return f"{parameters / 1e6:.1f}M"
    return f"{parameters / 1e3:.0f}K" if parameters >= 1e3 else str(parameters)


def _date(iso: str) -> str:
    return iso.replace("T", " ")[:16]
