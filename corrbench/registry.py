"""One generic Registry for methods, benchmarks, dataset adapters (``corrbench.datasets.DATASETS``), localisers
(``corrbench.localizers``) and trainers (``corrbench.train.api.TRAINERS``).

A name resolves, in this order, to:
1. something registered in this process with the decorator (``@register_method("name")``);
2. an entry point in the group ``corrbench.methods`` / ``corrbench.benchmarks`` (how corrbench's own methods
   and third-party packages are found; targets are ``"module:attr"`` strings imported only when used, so one
   method's missing optional dependency breaks only that method);
3. a ``path/to/file.py:Attr`` reference (the command line's way to evaluate a file without installing it).

Unknown names get did-you-mean suggestions; two different targets under one name are an error.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from .errors import ConfigError, UnknownNameError

T = TypeVar("T")


@dataclass
class _Entry:
    target: Any  # the object, or a lazy "module:attr" string
    origin: str  # where the registration came from, for error messages

    def describe_target(self) -> str:
        if isinstance(self.target, str):
            return self.target
        return f"{getattr(self.target, '__module__', '?')}:{getattr(self.target, '__qualname__', repr(self.target))}"


def import_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (attr may be dotted)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"malformed target {target!r}", hint="write it as package.module:Name")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {target!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{module_name!r} has no attribute {attr!r} (from {target!r})") from None
    return obj


def file_module_name(path: Path) -> str:
    """The module name a ``file.py:Attr`` reference is loaded under, e.g. ``corrbench_user_mine_3f2a9c01d4e5``.

    Results, run directories and feature-cache keys record ``module:Class``, so the name must be the same in
    every process (Python's ``hash(str)`` is salted per process, which made every run a new one): it hashes the
    file's resolved path and its source, so editing the file makes a new identity and a new run.
    """
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode() + b"\0" + resolved.read_bytes()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"corrbench_user_{stem}_{digest}"


def load_from_file(reference: str) -> tuple[str, Any]:
    """Load ``path/to/file.py:Attr``; returns ``(Attr, object)``."""
    path_text, _, attr = reference.rpartition(":")
    path = Path(path_text).expanduser()
    if not attr or path.suffix != ".py":
        raise ConfigError(f"malformed file reference {reference!r}", hint="write it as path/to/file.py:ClassName")
    if not path.is_file():
        raise ConfigError(f"file not found: {path}", hint=f"check the path in {reference!r}")
    module_name = file_module_name(path)
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[module_name]
            raise
    module = sys.modules[module_name]
    if not hasattr(module, attr):
        public = [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, public, n=3)
        raise ConfigError(
            f"{path} defines no {attr!r}", hint=f"did you mean {', '.join(close)}?" if close else None
        )
    return attr, getattr(module, attr)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """"did you mean 'a', 'b'?" naming the candidates close to ``name`` (case-insensitive), or None."""
    by_lower: dict[str, str] = {}
    for candidate in sorted(candidates):  # sorted: the same suggestion whatever the input order
        by_lower.setdefault(candidate.lower(), candidate)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)
    return f"did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else None


def is_file_reference(name: str) -> bool:
    return ".py:" in name


class Registry(Generic[T]):
    """Maps names (and aliases) to objects of one kind.

    kind: "method", "benchmark" or "localizer", used in messages.
    group: the entry-point group scanned for lazy registrations (None: only what is registered in code).
    check: validates a resolved object (e.g. "is a Matcher subclass") and raises ConfigError if not.
    listed: whether `corrbench ls <kind>s` lists the names (an unknown name's hint points there; else it
    names them all).
    """

    def __init__(self, kind: str, group: str | None, check: Callable[[str, Any], None] | None = None, *,
                 listed: bool = True):
        self.kind = kind
        self.group = group
        self._check = check
        self._listed = listed
        self._entries: dict[str, _Entry] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points_loaded = False

    # -- registration ------------------------------------------------------------------------------------
    def register(self, name: str, target: Any = None, *, aliases: tuple[str, ...] = (), origin: str = "decorator"):
        """Register ``target`` under ``name``; without a target, return a decorator."""
        if target is None:
            def decorator(obj: T) -> T:
                self.register(name, obj, aliases=aliases, origin=origin)
                return obj

            return decorator
        self._add(name, _Entry(target, origin))
        for alias in aliases:
            if alias in self._aliases and self._aliases[alias] != name:
                raise ConfigError(f"{self.kind} alias {alias!r} is already used for {self._aliases[alias]!r}")
            self._aliases[alias] = name
        return target

    def _add(self, name: str, entry: _Entry) -> None:
        if not name or name != name.strip() or " " in name:
            raise ConfigError(f"invalid {self.kind} name {name!r}", hint="use lower-case words joined by '-'")
        existing = self._entries.get(name)
        if existing is not None and not self._same_target(existing, entry):
            raise ConfigError(
                f"duplicate {self.kind} name {name!r}: {existing.describe_target()} ({existing.origin}) "
                f"and {entry.describe_target()} ({entry.origin})",
                hint=f"rename one of them; {self.kind} names must be unique",
            )
        if existing is None or not isinstance(entry.target, str):
            self._entries[name] = entry

    @staticmethod
    def _same_target(a: _Entry, b: _Entry) -> bool:
        if a.describe_target() == b.describe_target() or a.target is b.target:
            return True
        # An entry point ("module:attr") and an object registered in code may be the same thing: resolve the
        # string only in this rare case, so entry points stay lazy otherwise.
        lazy, concrete = (a, b) if isinstance(a.target, str) else (b, a)
        if isinstance(lazy.target, str) and not isinstance(concrete.target, str):
            try:
                return import_target(lazy.target) is concrete.target
            except ConfigError:
                return False
        return False

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        if self.group is None:
            return
        for ep in importlib.metadata.entry_points(group=self.group):
            self._add(ep.name, _Entry(ep.value, f"entry point of {ep.dist.name if ep.dist else 'unknown package'}"))

    # -- lookup --------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_entry_points()
        return self._aliases.get(name, name) in self._entries

    def get(self, name: str) -> T:
        """Resolve a registered name, an alias, or a ``file.py:Attr`` reference."""
        if is_file_reference(name):
            _, obj = load_from_file(name)
            if self._check:
                self._check(name, obj)
            return obj
        self._load_entry_points()
        key = self._aliases.get(name, name)
        entry = self._entries.get(key)
        if entry is None:
            hint = did_you_mean(name, list(self._entries) + list(self._aliases))
            listing = (f"`corrbench ls {self.kind}s` lists them" if self._listed
                       else f"use one of {', '.join(self.names())}")
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}", hint=f"{hint} ({listing})" if hint else listing
            )
        if isinstance(entry.target, str):
            entry.target = import_target(entry.target)
        if self._check:
            self._check(key, entry.target)
        return entry.target

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self.names()]


def _check_method(name: str, obj: Any) -> None:
    from .matcher import Matcher

    if not (isinstance(obj, type) and issubclass(obj, Matcher)):
        raise ConfigError(f"method {name!r} resolves to {obj!r}, which is not a corrbench.Matcher subclass")
    missing = sorted(getattr(obj, "__abstractmethods__", ()))
    if missing:  # caught here, not as Python's "Can't instantiate abstract class" traceback at build time
        raise ConfigError(
            f"method {name!r}: class {obj.__name__} does not define {', '.join(missing)}",
            hint="a Matcher defines match(self, batch) -> MatchOutput; a FeatureMatcher defines "
            "extract(self, images) -> list[FeatureMap] and build_localizer(self)",
        )
    if not dataclasses.is_dataclass(getattr(obj, "Config", None)):  # build_config and `ls options` read its fields
        raise ConfigError(
            f"method {name!r}: {obj.__name__}.Config is not a dataclass",
            hint="decorate it with @dataclasses.dataclass and give each option a default, e.g. `seed: int = 0`",
        )


def _check_benchmark(name: str, obj: Any) -> None:
    from .protocol import BenchmarkSpec

    if not isinstance(obj, BenchmarkSpec):
        raise ConfigError(f"benchmark {name!r} resolves to {obj!r}, which is not a corrbench.BenchmarkSpec")


METHODS: Registry = Registry("method", "corrbench.methods", _check_method)
BENCHMARKS: Registry = Registry("benchmark", "corrbench.benchmarks", _check_benchmark)


def register_method(name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator: ``@register_method("my-method")`` makes ``--method my-method`` find the class."""
    return METHODS.register(name, aliases=aliases)


def register_benchmark(name: str, spec: Any = None, *, aliases: tuple[str, ...] = ()):
    return BENCHMARKS.register(name, spec, aliases=aliases)
