"""The model card of a run folder, README.md: the Hugging Face Hub's metadata (the YAML block at its
top) and a page on what the model is, how it was trained, a sample of its text and how to use it.

Training writes it at every evaluation, without a sample (a save stays cheap), and again at the end
of the run with one; `textlstm push` writes it with the repository's id in the usage lines. All it
says comes from the run folder itself (config.json, metrics.jsonl, model.safetensors).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

from textlstm.config import RunConfig
from textlstm.data.corpora.resolve import BUILTIN, HUB, resolve
from textlstm.errors import TextlstmError
from textlstm.fileio import write_text
from textlstm.model.summary import shape_text
from textlstm.runs import files
from textlstm.runs.hub import PREFIX, repo_id_of
from textlstm.runs.saved_runs import Run, read_run

SAMPLE_TOKENS = 100  # the length of the card's sample
REPO_PLACEHOLDER = "USER/NAME"  # the repository in the usage lines before `textlstm push` names it
UNSHOWN_SETTINGS = {"dataset", "init_from"}  # local paths: named by their last part in the text instead


def write_model_card(folder: str | Path, *, sample: str | None = None, repo_id: str | None = None) -> None:
    """(Re)write README.md in run `folder`. sample: the text the saved weights write greedily from an
    empty prompt, SAMPLE_TOKENS tokens at most (made by the caller with the generation API; training
    writes it at its end, not at every save); without it the card says one comes at the end."""
    folder = Path(folder)
    write_text(folder / files.MODEL_CARD, model_card(read_run(folder), sample, repo_id))


def model_card(run: Run, sample: str | None, repo_id: str | None = None) -> str:
    """The card's text: the YAML metadata block, then the page."""
    if run.config is None:
        raise TextlstmError(f"{run.folder}: {run.problem}")
    name = repo_id.split("/")[-1] if repo_id else run.name
    metadata = card_data(run, name).to_yaml()
    sections = [
        f"# {name}",
        _model_section(run),
        _evaluation_section(run),
        _training_section(run),
        _sample_section(sample),
        _use_section(repo_id or REPO_PLACEHOLDER, placeholder=repo_id is None),
    ]
    return f"---\n{metadata}\n---\n\n" + "\n\n".join(sections) + "\n"


def card_data(run: Run, name: str):
    """The Hub's metadata: library, task, tags, the Hub dataset trained on, the parent model on the
    Hub, and the best validation figures as model-index results."""
    from huggingface_hub import ModelCardData

    config = run.config
    hub_dataset, _ = corpus_of(config.data.dataset)
    parent = repo_id_of(run.parent) if run.parent else None
    return ModelCardData(
        library_name="textlstm",
        pipeline_tag="text-generation",
        tags=[
            "text-generation",
            "lstm",
            f"{config.data.tokenizer}-tokenizer",
            *(["mogrifier"] if config.model.cell == "mogrifier" else []),
        ],
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=parent,
        model_name=name,
        eval_results=eval_results(run) or None,
    )


def eval_results(run: Run) -> list:
    """Bits per character (when the evaluation scored the whole validation text) and perplexity of
    the best evaluation, on the validation text."""
    from huggingface_hub import EvalResult

    best = run.best
    if best is None:
        return []
    data = run.config.data
    hub_dataset, corpus = corpus_of(data.dataset)
    validation = dict(
        task_type="text-generation",
        task_name="Language modeling",
        dataset_type=hub_dataset or corpus,
        dataset_name=f"{corpus} ({validation_text(run.config)})",
        dataset_config=data.dataset_config,
        dataset_split=data.valid_split,
    )
    figures = [
        ("bpc", "Validation bits per character", best.get("valid_bits_per_char")),
        ("perplexity", "Validation perplexity (per token)", best.get("valid_perplexity")),
    ]
    return [
        EvalResult(**validation, metric_type=kind, metric_name=label, metric_value=round(value, 4))
        for kind, label, value in figures
        if isinstance(value, (int, float))
    ]


@functools.lru_cache(maxsize=16)
def corpus_of(dataset: str | None) -> tuple[str | None, str]:
    """(the Hub dataset id, None for a local or built-in corpus; the corpus's name in the card).
    A local corpus is named by its file or folder name, never by its path."""
    if dataset is None:
        return None, "the built-in corpus (Python's own documentation)"
    try:
        source = resolve(dataset)
    except TextlstmError:  # a local path that is not there any more
        source = None
    if source is not None and source.kind == HUB:
        return source.where, source.where
    if source is not None and source.kind == BUILTIN:
        return None, f"the built-in corpus '{source.name}'"
    return None, Path(dataset.rstrip("/")).name or dataset


def validation_text(config: RunConfig) -> str:
    """Which part of the corpus training validated on, by the rule it followed."""
    data = config.data
    if data.valid_split:
        return f"the '{data.valid_split}' split"
    if data.streaming:
        return "the first million characters of the validation split, else of the stream"
    return "the validation split, else the last 10% of the training text"


# ----------------------------------------------------------------------------- the page


def _model_section(run: Run) -> str:
    model = run.config.model
    cell = f"Mogrifier LSTM ({model.mogrifier_rounds} rounds)" if model.cell == "mogrifier" else "LSTM"
    rows = "\n".join(
        f"| {row.name} ({row.kind}) | {shape_text(row.output_shape)} | {row.parameters:,} |" for row in run.layers()
    )
    return (
        "## Model\n\n"
        f"A {model.layers}-layer {cell} language model with {model.hidden_size} units per layer and "
        f"{model.embedding_size}-dimensional embeddings: {run.parameters:,} parameters, trained with textlstm. "
        f"Tokenizer: {run.config.data.tokenizer}, {model.vocab_size:,} tokens in the vocabulary.\n\n"
        "| Layer (type) | Output shape | Parameters |\n| --- | --- | ---: |\n" + rows + "\n\n"
        f"Files: `{files.BEST_WEIGHTS}` (the weights of the best validation loss), `{files.TOKENIZER}`, "
        f"`{files.CONFIG}` (every setting of the run) and `{files.METRICS}` (one record per evaluation)."
    )


def _evaluation_section(run: Run) -> str:
    if not run.records:
        return "## Evaluation\n\nNo evaluation recorded yet."
    best = run.best
    if best is None:
        return "## Evaluation\n\nNo evaluation with a finite validation loss."
    figures = [f"loss {best['valid_loss']:.4f} nats per token"]
    if isinstance(best.get("valid_perplexity"), (int, float)):
        figures.append(f"perplexity {best['valid_perplexity']:.2f} (per token)")
    if isinstance(best.get("valid_bits_per_char"), (int, float)):
        figures.append(f"{best['valid_bits_per_char']:.4f} bits per character")
    _, corpus = corpus_of(run.config.data.dataset)
    return (
        "## Evaluation\n\n"
        f"Best validation, at step {best['step']:,}: {', '.join(figures)}. "
        f"Validation text, held out from training: {corpus}, {validation_text(run.config)}."
    )


def _training_section(run: Run) -> str:
    config, last = run.config, run.records[-1] if run.records else {}
    hub_dataset, corpus = corpus_of(config.data.dataset)
    corpus = f"[{hub_dataset}](https://huggingface.co/datasets/{hub_dataset})" if hub_dataset else corpus
    lines = [f"Corpus: {corpus}."]
    if last:
        lines.append(
            f"Trained for {last['step']:,} steps ({last.get('epoch', 0):.2f} epochs) "
            f"in {_duration(last.get('elapsed_sec', 0))}"
            + (f" on {config.world_size} processes." if config.world_size > 1 else ".")
        )
    if run.parent:
        parent = repo_id_of(run.parent)
        lines.append(f"Fine-tuned from {f'{PREFIX}{parent}' if parent else Path(run.parent).name}.")
    auto = ", ".join(f"{_label(name)} {_shown(value)}" for name, value in _settings(config, auto=True))
    lines.append(f"Chosen by textlstm when left at auto (these are the values the run used): {auto}.")
    changed = _settings(config, auto=False, changed_only=True)
    table = "\n".join(f"| {_label(name)} | {_shown(value)} |" for name, value in changed)
    settings = (
        (
            "Settings other than textlstm's defaults (`config.json` holds them all):\n\n"
            "| Setting | Value |\n| --- | --- |\n" + table
        )
        if changed
        else "Every other setting at textlstm's default (`config.json` holds them all)."
    )
    return "## Training\n\n" + " ".join(lines) + "\n\n" + settings


def _settings(config: RunConfig, auto: bool, changed_only: bool = False) -> list[tuple[str, object]]:
    """(name, value) of the settings that have an option, the auto ones or the others."""
    found = []
    for part in (config.data, config.model, config.train):
        for field in dataclasses.fields(part):
            meta = field.metadata
            if meta.get("internal") or field.name in UNSHOWN_SETTINGS or bool(meta.get("auto")) != auto:
                continue
            value = getattr(part, field.name)
            if not changed_only or value != field.default:
                found.append((field.name, value))
    return found


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.1f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"


def _label(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sample_section(sample: str | None) -> str:
    if sample is None:
        return "## Sample\n\nSample: at the end of training."
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", sample)), default=0))
    return (
        "## Sample\n\n"
        f"What the model writes from an empty prompt, taking the most likely token each time "
        f"(`--temperature 0`), at most {SAMPLE_TOKENS} tokens:\n\n"
        f"{fence}text\n{sample}\n{fence}"
    )


def _use_section(repo_id: str, placeholder: bool) -> str:
    where = f"{PREFIX}{repo_id}"
    note = (
        f"\n\n{REPO_PLACEHOLDER}: the repository the run is pushed to (`textlstm push RUN --repo {REPO_PLACEHOLDER}`)."
        if placeholder
        else ""
    )
    return (
        "## Use\n\n"
        "With textlstm installed, the model is downloaded into the Hugging Face cache on first use:\n\n"
        f'```bash\ntextlstm generate --checkpoint {where} --prompt "The" --max-tokens 200\n'
        f'textlstm generate --checkpoint {where} --prompt "" --temperature 0 --max-tokens {SAMPLE_TOKENS}'
        "  # the sample above\n"
        f"textlstm serve --checkpoint {where}\n```\n\n"
        f'```python\nimport textlstm\n\nlm = textlstm.load("{where}")\n'
        'print(lm.generate("The", max_tokens=200, seed=1))\n```' + note
    )
