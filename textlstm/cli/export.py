"""`textlstm export`: a trained model as files that run without textlstm or torch (ONNX)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run", required=False, type=click.Path(file_okay=False))
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["onnx"]),
    default="onnx",
    show_default=True,
    help="onnx: model.onnx, the step graph (token ids and the LSTM state in; log-probabilities over "
    "the whole vocabulary and the new state out), with tokenizer.json and config.json.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the files into; created if missing, refused if it holds files (see --overwrite).",
)
@click.option(
    "--overwrite", is_flag=True, help="Export into a folder that holds files, replacing the export's own files there."
)
@click.option(
    "--quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    callback=lambda ctx, param, value: None if value == "none" else value,
    help="int8: model.onnx with int8 weights for the LSTM and the output layer (onnxruntime's dynamic "
    "quantization; the embedding stays float32), for onnxruntime only; its log-probabilities differ "
    "slightly from float32's (docs/export.md).",
)
def export_command(run, export_format, output, overwrite, quantize) -> None:
    """Export RUN (a run folder, or the name of a run under checkpoints/; default: the newest run) for
    runtimes outside textlstm, e.g. onnxruntime. examples/onnx_generate.py generates text from the
    folder written, with onnxruntime, numpy and tokenizers only."""
    from textlstm.runs.checkpoint import find_latest_checkpoint
    from textlstm.runs.export import export_onnx
    from textlstm.runs.saved_runs import find_run

    folder = find_run(run) if run else find_latest_checkpoint()
    written = export_onnx(folder, output, overwrite=overwrite, quantize=quantize)
    click.echo(f"exported {folder} to {output}: {', '.join(path.name for path in written)}")
