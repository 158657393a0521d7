"""Strict option handling for methods: a dataclass of defaults, overridden by ``--set key=value``.

Values from the command line arrive as strings and are converted to the field's declared type; an unknown
key or a value that does not parse is an error that names the key, the expected type and the valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping

from .errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


def parse_assignments(items: typing.Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}`` (the ``--set`` option)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"malformed --set {item!r}", hint="write it as KEY=VALUE, e.g. --set resolution=448")
        out[key.strip()] = value.strip()
    return out


def _convert(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.lower() in _NONE and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"option {key!r}: cannot read {value!r} as {annotation}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"option {key!r}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        inner = args[0] if args else str
        converted = [_convert(v.strip() if isinstance(v, str) else v, inner, key) for v in items if v != ""]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"option {key!r}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"option {key!r}: expected a number, got {value!r}")
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"option {key!r}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and value != number:
            raise ConfigError(f"option {key!r}: expected an integer, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"option {key!r}: expected text, got {value!r}")
        return value
    if annotation is Any:
        return value
    return value


def build_config(config_class: type, options: Mapping[str, Any], owner: str) -> Any:
    """An instance of ``config_class`` with ``options`` (strings or typed values) applied strictly."""
    if not dataclasses.is_dataclass(config_class):
        raise TypeError(f"{owner}.Config must be a dataclass")
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    values = {}
    for key, value in options.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"{owner} has no option {key!r}",
                hint=f"{hint}valid options: {', '.join(sorted(fields)) or '(none)'}",
            )
        values[key] = _convert(value, hints[key], key)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{owner}: invalid options {dict(options)}: {exc}") from None


def config_to_json(config: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
