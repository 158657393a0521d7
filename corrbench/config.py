"""Strict option handling for methods: a dataclass of defaults, overridden by ``--set key=value``.

Values from the command line arrive as strings and are converted to the field's declared type; an unknown
key or a value that does not parse is an error that names the key, the expected type and the valid keys.

Each option declares what it means and which values are valid where it is defined, with ``option()``::

    @dataclasses.dataclass
    class Config:
        dim: int = option(64, "token width", ge=1)
        heads: int = option(4, "attention heads", ge=1)
        localizer: str = option("argmax", "how a similarity map becomes a point", choices=("argmax", "..."))
        window: int = option(7, "soft-argmax window radius", ge=0, used_when={"localizer": ("window-soft-argmax",)})
        rules = (Rule(lambda c: c.dim % c.heads == 0, "dim {dim} must be divisible by heads {heads}"),)

``build_config`` checks every field's range (``ge``/``gt``/``le``/``lt``, ``multiple_of``, ``choices``) before the
dataclass is built, then the cross-field ``rules``, then that no option set explicitly is one the other options
make unused (``used_when``: an error, since a setting that changes nothing is almost always a mistake).
The same metadata feeds ``corrbench ls options METHOD``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Callable, Mapping

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
    return value  # Any, and types without a text form, pass through as given


# -- declaring options ------------------------------------------------------------------------------------------
_MISSING: Any = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | Any = _MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    multiple_of: int | None = None,
    choices: typing.Sequence[Any] | None = None,
    used_when: Mapping[str, typing.Sequence[Any]] | None = None,
) -> Any:
    """A Config field with its meaning and valid values (checked by ``build_config``; ``None`` is always allowed
    for optional fields). ``used_when={"localizer": ("a", "b")}``: the option matters only for those values."""
    metadata = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "multiple_of": multiple_of,
                "choices": tuple(choices) if choices is not None else None,
                "used_when": {k: tuple(v) for k, v in used_when.items()} if used_when else None}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def redefault(parent: type, name: str, default: Any) -> Any:
    """``parent``'s option ``name`` with another default (a subclass Config keeps the meaning and the checks)."""
    inherited = {f.name: f for f in dataclasses.fields(parent)}[name]
    return dataclasses.field(default=default, metadata=inherited.metadata)


@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint between options, declared on a Config as ``rules = (Rule(...), ...)``.

    ``check(config)`` must be true; ``message`` and ``hint`` may name options as ``{name}`` (filled with values).
    """

    check: Callable[[Any], bool]
    message: str
    hint: str | None = None


def describe_range(metadata: Mapping[str, Any]) -> str:
    """``">= 14, multiple of 14"``, ``"one of a, b"`` or ``""``: the valid values an option declares."""
    parts = []
    for key, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if metadata.get(key) is not None:
            parts.append(f"{symbol} {metadata[key]}")
    if metadata.get("multiple_of"):
        parts.append(f"multiple of {metadata['multiple_of']}")
    if metadata.get("choices"):
        parts.append("one of " + ", ".join(map(str, metadata["choices"])))
    return ", ".join(parts)


def _in_range(value: Any, metadata: Mapping[str, Any]) -> bool:
    if metadata.get("choices") and value not in metadata["choices"]:
        return False
    bounds = (("ge", lambda v, b: v >= b), ("gt", lambda v, b: v > b), ("le", lambda v, b: v <= b),
              ("lt", lambda v, b: v < b))
    if any(metadata.get(key) is not None and not holds(value, metadata[key]) for key, holds in bounds):
        return False
    step = metadata.get("multiple_of")
    return not step or value % step == 0


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _MISSING


def _check_ranges(fields: Mapping[str, dataclasses.Field], values: Mapping[str, Any], owner: str) -> None:
    """Every field's value (given or default) against its declared range, before the dataclass runs any code."""
    for name, field in fields.items():
        value = values[name] if name in values else _default(field)
        if value is None or value is _MISSING or not describe_range(field.metadata):
            continue
        if not _in_range(value, field.metadata):
            meaning = f" ({field.metadata['help']})" if field.metadata.get("help") else ""
            raise ConfigError(
                f"option {name!r} of {owner} must be {describe_range(field.metadata)}, got {value!r}",
                hint=f"valid: {describe_range(field.metadata)}; the default is {name}={_default(field)}{meaning}",
            )


def _check_rules(config: Any, owner: str) -> None:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for rule in getattr(type(config), "rules", ()):
        if not rule.check(config):
            raise ConfigError(f"{owner}: {rule.message.format(**values)}",
                              hint=rule.hint.format(**values) if rule.hint else None)


def _check_unused(config: Any, explicit: typing.Iterable[str], owner: str) -> None:
    """An option set explicitly that the other options make unused is an error (it would change nothing)."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for name in explicit:
        condition = fields[name].metadata.get("used_when") if name in fields else None
        for other, wanted in (condition or {}).items():
            actual = getattr(config, other)
            if actual not in wanted:
                raise ConfigError(
                    f"option {name!r} of {owner} has no effect with {other}={actual!r}",
                    hint=f"{name} is used only with {other} = {' or '.join(map(str, wanted))}; "
                    f"drop --set {name} or set {other} to one of those",
                )


def build_config(config_class: type, options: Mapping[str, Any], owner: str) -> Any:
    """An instance of ``config_class`` with ``options`` (strings or typed values) applied strictly and checked
    against the options' declared ranges, rules and ``used_when`` conditions (see the module docstring)."""
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
    _check_ranges(fields, values, owner)
    try:
        config = config_class(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{owner}: invalid options {dict(options)}: {exc}") from None
    _check_rules(config, owner)
    _check_unused(config, values, owner)
    return config


def describe_options(config_class: type) -> list[dict[str, Any]]:
    """One record per option: name, type, default, valid values, meaning, and when it is used."""
    hints = typing.get_type_hints(config_class)
    rows = []
    for field in dataclasses.fields(config_class):
        if not field.init:
            continue
        meta = field.metadata
        used = meta.get("used_when")
        rows.append({
            "name": field.name,
            "type": _type_name(hints.get(field.name, Any)),
            "default": _default(field),
            "range": describe_range(meta),
            "help": meta.get("help", ""),
            "used_when": " and ".join(f"{k} = {' or '.join(map(str, v))}" for k, v in used.items()) if used else "",
        })
    return rows


def describe_rules(config_class: type) -> list[str]:
    """The cross-field ``rules`` of a Config as sentences about the options: a message's ``name {name}`` reads
    as the option's name, any other ``{name}`` as ``<name>`` ("dim {dim} must be divisible by heads {heads}"
    -> "dim must be divisible by heads")."""
    sentences = []
    for rule in getattr(config_class, "rules", ()):
        text = re.sub(r"\b(\w+) \{\1\}", r"\1", rule.message)
        sentences.append(re.sub(r"\{(\w+)\}", r"<\1>", text))
    return sentences


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def config_to_json(config: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
