"""Click options derived from a settings dataclass: each field's default, help, type and range.

A field `top_p: float = setting(1.0, "...", Range(0, 1, min_open=True))` becomes
`--top-p FLOAT RANGE` with that default and help; a `tuple[str, ...]` field becomes a repeatable
option. The dataclass stays the one place where a setting is defined.
"""

from __future__ import annotations

import dataclasses
import typing

import click


def dataclass_options(cls, show_defaults: bool = True):
    """A decorator adding one option per field of `cls`, in field order."""
    hints = typing.get_type_hints(cls)
    options = [_option(field, hints[field.name], show_defaults) for field in dataclasses.fields(cls)]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def dataclass_values(cls, params: dict) -> dict:
    """The fields of `cls` among a command's parameters."""
    return {field.name: params[field.name] for field in dataclasses.fields(cls)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _option(field: dataclasses.Field, hint, show_defaults: bool):
    kind, repeatable = base_type(hint)
    return click.option(
        flag(field.name),
        field.name,
        type=_click_type(kind, field.metadata.get("range")),
        default=field.default,
        show_default=show_defaults and field.default not in (None, (), ""),
        help=field.metadata.get("help"),
        metavar=field.metadata.get("metavar"),
        multiple=repeatable,
    )


def base_type(hint) -> tuple[type, bool]:
    """(the scalar type, whether the field holds a tuple of them) of `int | None`, `tuple[str, ...]`..."""
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    scalars = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return (scalars[0] if scalars else hint), False


def _click_type(kind: type, allowed):
    if allowed is None or kind not in (int, float):
        return kind
    range_type = click.IntRange if kind is int else click.FloatRange
    return range_type(min=allowed.minimum, max=allowed.maximum, min_open=allowed.min_open, max_open=allowed.max_open)
