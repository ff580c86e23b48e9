"""The Hugging Face Hub: checkpoints named `hf://USER/NAME[@REVISION]`, and pushing a run folder.

A Hub id is downloaded with `huggingface_hub.snapshot_download` into the Hub's own cache (HF_HOME,
HF_HUB_CACHE), only the files a load reads (LOAD_FILES: JSON and safetensors, never the pickled
trainer state). With HF_HUB_OFFLINE=1 the library reads that cache without asking the Hub.
`huggingface_hub` is imported inside the functions: a local checkpoint never waits for it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from textlstm import __version__
from textlstm.errors import TextlstmError
from textlstm.runs import files

PREFIX = "hf://"
LOAD_FILES = [
    files.CONFIG,
    files.TOKENIZER,
    files.BEST_WEIGHTS,
    files.METRICS,
]  # what generate, eval, info and --init-from read
PUSHED_FILES = [
    files.MODEL_CARD,
    files.BEST_WEIGHTS,
    files.TOKENIZER,
    files.CONFIG,
    files.METRICS,
]  # what a user of the model needs
NEEDED_TO_PUSH = [files.MODEL_CARD, files.BEST_WEIGHTS, files.TOKENIZER, files.CONFIG]
LOGIN_HINT = "set HF_TOKEN or log in with `hf auth login`"
# A snapshot in the Hub's cache: .../models--USER--NAME/snapshots/COMMIT
SNAPSHOT = re.compile(r"models--(?P<repo>.+)/snapshots/[0-9a-f]{40}/?$")


def is_hub_id(text: str | Path) -> bool:
    return str(text).startswith(PREFIX)


def resolve_checkpoint(text: str | Path) -> Path:
    """The checkpoint folder `text` names: a local folder as it is, or `hf://USER/NAME[@REVISION]`
    (a branch, tag or commit hash; default main) downloaded into the Hub's cache, or found there offline."""
    if not is_hub_id(text):
        return Path(text)
    repo_id, revision = parse_hub_id(str(text))
    folder = Path(_snapshot(repo_id, revision, str(text)))
    if not (folder / files.CONFIG).is_file():
        raise TextlstmError(f"{text} is not a textlstm model: the repository has no {files.CONFIG}")
    return folder


def parse_hub_id(text: str) -> tuple[str, str | None]:
    """(repo id, revision or None) of `hf://USER/NAME[@REVISION]`."""
    repo_id, _, revision = text.removeprefix(PREFIX).partition("@")
    _check_repo_id(repo_id, text)
    if "@" in text and not revision:
        raise TextlstmError(f"{text}: no revision after '@' (give a branch, a tag or a commit hash)")
    return repo_id, revision or None


def repo_id_of(folder: str | Path) -> str | None:
    """USER/NAME when `folder` is a snapshot in the Hub's cache (what resolve_checkpoint returns), else None."""
    match = SNAPSHOT.search(Path(folder).as_posix())
    return match["repo"].replace("--", "/") if match else None


def _check_repo_id(repo_id: str, given: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise TextlstmError(f"{given} is not a Hub model id, hf://USER/NAME[@REVISION]: {_first_line(error)}") from None


def _snapshot(repo_id: str, revision: str | None, given: str) -> str:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return snapshot_download(
            repo_id, revision=revision, allow_patterns=LOAD_FILES, library_name="textlstm", library_version=__version__
        )
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise TextlstmError(
                f"{given} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE=1 keeps "
                "the Hub out of reach: unset it to download the model"
            ) from None
        raise TextlstmError(
            f"{given}: the Hub cannot be reached and the model is not in the Hugging Face cache"
        ) from None
    except GatedRepoError:
        raise TextlstmError(f"{given} is gated: accept its conditions on the Hub, then {LOGIN_HINT}") from None
    except RepositoryNotFoundError:
        raise TextlstmError(f"no model {repo_id} on the Hub (if it is private, {LOGIN_HINT})") from None
    except RevisionNotFoundError:
        raise TextlstmError(f"{repo_id} has no revision '{revision}' on the Hub") from None
    except (HfHubHTTPError, *_network_errors()) as error:
        raise TextlstmError(f"cannot download {given}: {_first_line(error)}") from None


# ----------------------------------------------------------------------------- pushing a run


def files_to_push(folder: Path, with_state: bool = False) -> list[str]:
    """The files of run `folder` that `push_run` uploads: the model card, weights, tokenizer, config
    and metrics; the trainer state (a pickle, for --resume) only `with_state`."""
    folder = Path(folder)
    missing = [name for name in NEEDED_TO_PUSH if not (folder / name).is_file()]
    if missing:
        raise TextlstmError(f"{folder} is not a run to push: it has no {', '.join(missing)}")
    names = PUSHED_FILES + ([files.TRAINER_STATE] if with_state else [])
    if with_state and not (folder / files.TRAINER_STATE).is_file():
        raise TextlstmError(f"--with-state: {folder} has no {files.TRAINER_STATE}")
    return [name for name in names if (folder / name).is_file()]


def check_repo_id_to_push(repo_id: str) -> str:
    """`repo_id` as USER/NAME (an hf:// prefix taken off), or an error."""
    repo_id = repo_id.removeprefix(PREFIX)
    if repo_id.count("/") != 1 or "@" in repo_id:
        raise TextlstmError(
            f"--repo {repo_id}: give the repository as USER/NAME (your user or organization, then a name)"
        )
    _check_repo_id(repo_id, repo_id)
    return repo_id


def check_can_push() -> None:
    """A token to push with (HF_TOKEN, else the one `hf auth login` saved) and the Hub not switched off:
    checked before anything is written or sent."""
    from huggingface_hub import constants, get_token

    if get_token() is None:
        raise TextlstmError(f"not logged in to the Hugging Face Hub: {LOGIN_HINT}")
    if constants.HF_HUB_OFFLINE:
        raise TextlstmError("HF_HUB_OFFLINE=1 keeps the Hub out of reach: unset it to push")


def push_run(folder: Path, repo_id: str, files: list[str], private: bool = False) -> str:
    """Upload `files` of run `folder` to the model repository `repo_id` (created if it does not
    exist; `private` applies to a new one); return the repository's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    check_can_push()
    api = HfApi(library_name="textlstm", library_version=__version__)
    try:
        url = api.create_repo(repo_id, exist_ok=True, private=private)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            allow_patterns=files,
            commit_message=f"Upload {Path(folder).name} with textlstm",
        )
    except HfHubHTTPError as error:
        raise TextlstmError(f"cannot push to {repo_id}: {_refusal(error)}") from None
    except _network_errors() as error:
        raise TextlstmError(f"cannot push to {repo_id}: the Hub cannot be reached ({_first_line(error)})") from None
    return str(url)


def _refusal(error) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        return f"the Hub did not accept the token ({LOGIN_HINT})"
    if status == 403:
        return "the token may not write there (a token with write access, and your user or an organization of yours)"
    return _first_line(error)


def _network_errors() -> tuple[type[BaseException], ...]:
    """What the Hub library's HTTP client raises when the Hub cannot be reached: requests' errors
    (huggingface_hub before 1.0) are OSErrors, httpx's are not."""
    errors: list[type[BaseException]] = [OSError]
    for client in ("httpx", "httpx2"):
        module = sys.modules.get(client)
        if module is not None and hasattr(module, "TransportError"):
            errors.append(module.TransportError)
    return tuple(errors)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
