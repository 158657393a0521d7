"""Localisers by name: what a method's ``localizer`` option can say, and ``build_localizer`` to make one.

The names live in the one ``Registry`` (so a misspelt name gets a did-you-mean); the localisers themselves, as
functions and module twins, are in ``corrbench.similarity``. This module sits beside ``similarity`` rather than in
it because the registry's method check imports ``matcher``, which imports ``similarity``: a registry kept in
``similarity`` would close an import circle.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError
from .similarity import Argmax, GaussianSoftArgmax, Localizer, WindowSoftArgmax
from .registry import Registry


def _check_localizer(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Localizer)):
        raise ConfigError(f"localizer {name!r} resolves to {obj!r}, which is not a corrbench.similarity.Localizer")


#: No entry-point group: a method's ``localizer`` choices are fixed when its class is defined, so a plug-in that
#: wants another localiser returns it from its own ``build_localizer``.
LOCALIZERS: Registry = Registry("localizer", None, _check_localizer, listed=False)
LOCALIZERS.register("argmax", Argmax, origin="corrbench.localizers")
LOCALIZERS.register("window-soft-argmax", WindowSoftArgmax, origin="corrbench.localizers")
LOCALIZERS.register("gaussian-soft-argmax", GaussianSoftArgmax, origin="corrbench.localizers")


def build_localizer(name: str, **settings: Any) -> Localizer:
    """A localiser by name (``LOCALIZERS.names()``) with its settings (``radius``, ``sigma``, ``temperature``)."""
    cls = LOCALIZERS.get(name)
    try:
        return cls(**settings)
    except TypeError as exc:
        raise ConfigError(f"bad settings for localizer {name!r}: {exc}") from None
