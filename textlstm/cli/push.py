"""`textlstm push`: a run folder to a model repository on the Hugging Face Hub."""

from __future__ import annotations

import click

from textlstm.errors import TextlstmError


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option(
    "--repo",
    required=True,
    metavar="USER/NAME",
    help="The model repository: your user or organization, then a name. Created if it does not exist.",
)
@click.option("--private", is_flag=True, help="Create the repository private (an existing one keeps its visibility).")
@click.option(
    "--with-state",
    is_flag=True,
    help="Also upload trainer_state.pt, what --resume needs (a pickle; loading by hf:// never reads it).",
)
def push(run, repo, private, with_state) -> None:
    """Upload RUN (a run folder, or a run's name under checkpoints/) to the Hugging Face Hub.

    Uploads README.md, model.safetensors, tokenizer.json, config.json and metrics.jsonl. README.md,
    the model card, is written again first, with a sample and --repo in its usage lines. The token
    is HF_TOKEN's, else the one `hf auth login` saved. Afterwards `textlstm generate --checkpoint
    hf://USER/NAME` loads the model (a private one with a token there too).
    """
    from textlstm.cli.samples import card_sample
    from textlstm.runs import hub
    from textlstm.runs.model_card import write_model_card
    from textlstm.runs.saved_runs import find_run

    if hub.is_hub_id(run):
        raise TextlstmError(f"{run}: push uploads a run folder on this machine; give its folder or name")
    folder = find_run(run)
    repo_id = hub.check_repo_id_to_push(repo)
    hub.check_can_push()
    write_model_card(folder, sample=card_sample(folder), repo_id=repo_id)
    files = hub.files_to_push(folder, with_state)
    url = hub.push_run(folder, repo_id, files, private=private)
    click.echo(f"pushed {folder} to {url}: {', '.join(files)}")
