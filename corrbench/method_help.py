"""What ``corrbench ls options METHOD`` and ``corrbench describe METHOD`` print, from the method's own declarations.

Options come from the method's ``Config`` (``corrbench.config.option`` metadata: meaning, valid values, when
used); training from its trainer's presets. Nothing here is written twice: a method documents itself by declaring.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from .config import describe_options, describe_rules
from .registry import METHODS


def options_table(method: str, width: int = 100) -> str:
    """The method's options, one block each: ``name: type = default  valid: ...`` then its meaning, indented."""
    cls = METHODS.get(method)
    rows = describe_options(cls.Config)
    if not rows:
        return f"{method} has no options"
    wrap = textwrap.TextWrapper(width=width, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                break_on_hyphens=False, break_long_words=False)
    lines = [f"{method} options (--set KEY=VALUE):"]
    for row in rows:
        head = f"  {row['name']}: {row['type']} = {_shown(row['default'])}"
        lines.append(f"{head}    valid: {row['range']}" if row["range"] else head)
        lines += wrap.wrap(row["help"] or "(undocumented)")
        if row["used_when"]:
            lines += wrap.wrap(f"used only with {row['used_when']}")
    rules = describe_rules(cls.Config)
    if rules:
        lines.append("  and together:")
        lines += [line for rule in rules for line in wrap.wrap(rule)]
    return "\n".join(lines)


def describe_method(method: str) -> str:
    """A method in a few lines: what it is, its class, whether it is test-only, how it trains, then its options."""
    cls = METHODS.get(method)
    lines = [f"{method}: {cls.description or '(no description)'}",
             f"class: {cls.__module__}:{cls.__qualname__}"]
    if cls.uses_ground_truth:
        lines.append("test-only: it is given the target keypoints (results say so)")
    lines.append(f"training: {_training_summary(cls, method)}")
    lines += ["", options_table(method)]
    return "\n".join(lines)


def _training_summary(cls: type, method: str) -> str:
    from .train.api import Trainable, class_presets, trainer_class

    if trainer_class(cls) is None and not issubclass(cls, Trainable):
        return "not trainable"
    presets = class_presets(cls)
    if not presets:
        return f"corrbench train --method {method} (presets are known once the method is built)"
    default_name, default = next(iter(presets.items()))
    inference = next((f.default for f in dataclasses.fields(cls.Config) if f.name == "resolution"), None)
    canvas = f"\n  training canvas: train_resolution={default.train_resolution} px in preset {default_name!r}"
    if inference is not None:
        canvas += f"; the option resolution ({inference}) is the inference and validation canvas"
    return f"corrbench train --method {method} --preset {default_name} (presets: {', '.join(presets)}){canvas}"


def _shown(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)
