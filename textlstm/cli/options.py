"""Click options derived from a settings dataclass: each field's default, help, type and allowed values.

A field `top_p: float = setting(1.0, "P", "...", Range(0, 1, min_open=True))` becomes
`--top-p P` with that default, help and range. `Choices` become a choice; a number declared
auto with the default None also takes the word auto; a bool is a flag, a `list[int]` takes
comma-separated integers and a `tuple[str, ...]` is a repeatable option. Fields declared `internal`
get no option. The dataclass stays the one place where a setting is defined.
"""

from __future__ import annotations

import dataclasses
import typing

import click

from textlstm.config import AUTO, Choices


def dataclass_options(cls, show_defaults: bool = True):
    """A decorator adding one option per field of `cls` that is not internal, in field order."""
    hints = typing.get_type_hints(cls)
    options = [_option(field, hints[field.name], show_defaults) for field in option_fields(cls)]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of `cls` that commands take as options."""
    return [field for field in dataclasses.fields(cls) if not field.metadata.get("internal")]


def dataclass_values(cls, params: dict) -> dict:
    """The option fields of `cls` among a command's parameters."""
    return {field.name: params[field.name] for field in option_fields(cls)}


def takes_auto(field: dataclasses.Field) -> bool:
    """Whether the option's value may be "auto": training then chooses (textlstm/training/auto_settings.py)."""
    return bool(field.metadata.get("auto"))


def _auto_is_none(field: dataclasses.Field) -> bool:
    """A number whose "auto" is None: its option takes the word auto besides numbers."""
    return takes_auto(field) and field.default is None


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class AutoOr(click.ParamType):
    """A value of `inner`'s type, or "auto" (None: training chooses it)."""

    def __init__(self, inner: click.ParamType, value_name: str):
        self.inner = inner
        self.name = f"{inner.name}|{AUTO}"
        self.metavar = f"[{value_name}|{AUTO}]"

    def convert(self, value, param, ctx):
        if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
            return None
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, param, ctx=None) -> str:
        return self.metavar


class IntegerList(click.ParamType):
    """Comma-separated integers: "2000,10000" is [2000, 10000]."""

    name = "integers"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!r}", param, ctx)


def _option(field: dataclasses.Field, hint, show_defaults: bool):
    kind, repeatable = base_type(hint)
    if kind is bool:
        return _bool_option(field, show_defaults)
    return click.option(
        flag(field.name),
        field.name,
        type=_click_type(field, kind),
        default=field.default,
        show_default=(AUTO if _auto_is_none(field) else show_defaults and field.default not in (None, (), "")),
        help=field.metadata.get("help"),
        metavar=field.metadata.get("metavar"),
        multiple=repeatable,
    )


def _bool_option(field: dataclasses.Field, show_defaults: bool):
    """--x/--no-x for a field declared negatable (its default shown), else the flag --x that turns it on."""
    negatable = field.metadata.get("negatable")
    declaration = f"{flag(field.name)}/--no-{field.name.replace('_', '-')}" if negatable else flag(field.name)
    return click.option(
        declaration,
        field.name,
        is_flag=True,
        default=field.default,
        show_default=show_defaults and bool(negatable),
        help=field.metadata.get("help"),
    )


def base_type(hint) -> tuple[type, bool]:
    """(the scalar type, whether the field holds a tuple of them) of `int | None`, `tuple[str, ...]`..."""
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    scalars = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return (scalars[0] if scalars else hint), False


def _click_type(field: dataclasses.Field, kind):
    if field.metadata.get("folder"):
        return click.Path(file_okay=False)
    if typing.get_origin(kind) is list:
        return IntegerList()
    allowed = field.metadata.get("allowed")
    if isinstance(allowed, Choices):
        inner = click.Choice(list(allowed.values))
    elif allowed is not None and kind in (int, float):
        range_type = click.IntRange if kind is int else click.FloatRange
        inner = range_type(
            min=allowed.minimum, max=allowed.maximum, min_open=allowed.min_open, max_open=allowed.max_open
        )
    else:
        inner = kind
    return AutoOr(inner, kind.__name__.upper()) if _auto_is_none(field) else inner
