"""`textlstm serve`'s options derived from ServeSettings (textlstm/config.py), as train's are from its settings."""

from __future__ import annotations

import pytest

from conftest import write_tiny_checkpoint
from textlstm.cli.options import option_fields
from textlstm.cli.serve import serve
from textlstm.config import ServeSettings
from textlstm.errors import TextlstmError


def test_each_setting_is_an_option_with_the_settings_default_and_help():
    params = {param.name: param for param in serve.params}
    fields = option_fields(ServeSettings)
    assert {field.name for field in fields} >= {
        "max_conversations",
        "max_sequences",
        "threads",
        "max_request_tokens",
        "max_prompt_tokens",
        "max_sequences_per_key",
        "request_timeout",
    }
    for field in fields:
        assert (params[field.name].default, params[field.name].help) == (field.default, field.metadata["help"])


def test_the_command_serves_with_the_settings_it_was_given(run_cli, monkeypatch, tmp_path):
    """The ServeSettings the command hands the app: the dataclass's defaults but for the options given."""
    pytest.importorskip("fastapi")
    import textlstm.serve.app

    served = []

    def load_and_stop(load, access):
        served.append(load()[1])
        raise TextlstmError("stopped before listening")

    monkeypatch.setattr(textlstm.serve.app, "create_loading_app", load_and_stop)
    checkpoint = write_tiny_checkpoint(tmp_path / "run")
    for flags, given in (
        ((), {}),
        (("--max-conversations", "3", "--request-timeout", "0"), {"max_conversations": 3, "request_timeout": 0.0}),
    ):
        result = run_cli("serve", "--checkpoint", checkpoint, *flags)
        assert result.err.strip() == "error: stopped before listening"
        expected = ServeSettings(model_name="run", turn_format=served[-1].turn_format, **given)
        assert served[-1] == expected


def test_a_setting_out_of_range_is_refused_in_python_too():
    with pytest.raises(TextlstmError, match="max-sequences must be at least 1"):
        ServeSettings(model_name="tiny", max_sequences=0)
