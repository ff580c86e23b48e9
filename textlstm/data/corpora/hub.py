"""Datasets from the Hugging Face Hub, or from the local datasets cache when offline: datasets of plain
data files (Parquet, CSV, JSON, text) only, never one that runs a loading script."""

from __future__ import annotations

import datasets
from datasets.exceptions import DatasetsError

from textlstm.data.corpora.cards import card_names
from textlstm.data.corpora.loaded import Loaded, one_line, safe_name
from textlstm.errors import TextlstmError

# What load_dataset raises for a Hub id it cannot load. RuntimeError: datasets 4 and later refuse a
# dataset with a loading script with one; before that, trust_remote_code=False makes it a ValueError.
LOAD_ERRORS = (OSError, ValueError, RuntimeError, DatasetsError)
NO_SCRIPTS = {"trust_remote_code": False}
SCRIPT_REFUSALS = ("trust_remote_code", "Dataset scripts are no longer supported")


def load_hub(repo_id: str, config: str | None) -> Loaded:
    try:
        splits = datasets.load_dataset(repo_id, name=config, **NO_SCRIPTS)
    except LOAD_ERRORS as error:
        raise hub_failure(repo_id, error) from None
    return Loaded(
        safe_name(repo_id.replace("/", "_")), dict(splits), documents=True, source=hub_description(repo_id, config)
    )


def hub_failure(repo_id: str, error: BaseException) -> TextlstmError:
    """The one error line for a Hub id that cannot be loaded or streamed."""
    reason = one_line(error)
    if any(refusal in str(error) for refusal in SCRIPT_REFUSALS):
        return TextlstmError(
            f"could not load '{repo_id}' from the Hugging Face Hub: it is a dataset with a loading script, "
            "and textlstm reads only datasets of plain data files (Parquet, CSV, JSON or text)"
        )
    if datasets.config.HF_HUB_OFFLINE and isinstance(error, ConnectionError):
        reason = "offline: HF_HUB_OFFLINE is set and it is not in the local datasets cache"
    if "/" in repo_id:
        hint = "; there is no local file or folder by that name either"
    else:
        hint = f"; nor is it a corpus card (cards: {', '.join(card_names()) or 'none'})"
    return TextlstmError(f"could not load '{repo_id}' from the Hugging Face Hub ({reason}){hint}")


def hub_description(repo_id: str, config: str | None) -> str:
    source = f"Hugging Face Hub: {repo_id}" + (f" ({config})" if config else "")
    if datasets.config.HF_HUB_OFFLINE:
        source += ", from the local cache (offline)"
    return source
