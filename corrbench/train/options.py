"""What ``corrbench train`` is asked for, and where each ``--set`` key goes.

``--set KEY=VALUE`` keys belong to exactly one of three owners (``split_options``): the method's options
(its ``Config``), the method's own training settings (the recipe's ``method`` dataclass), or the recipe's
generic fields (``TrainingRecipe``). ``build_for_training`` builds the method and resolves its recipe:
the trainer's presets, then ``--preset``, then the routed keys, then ``--epochs`` / ``--batch-size`` / ``--lr``.

Nothing here imports torch at module level: ``corrbench.cli`` reads ``TRAIN_DTYPES`` when it starts.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import build_config
from ..errors import ConfigError
from .api import Trainable, TrainingRecipe, class_presets, trainer_for, training_method_defaults

TRAIN_DTYPES = ("float32", "bfloat16", "float16")
#: Devices that train in bfloat16 / float16: CPU autocast works but is slower than fp32 and not what anyone
#: trains with, so a reduced-precision CPU run is refused rather than silently slow.
REDUCED_PRECISION_DEVICES = ("cuda",)


@dataclass
class TrainOptions:
    """Everything ``corrbench train`` takes; None means "the preset's value"."""

    method: str
    benchmark: str
    options: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_steps: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    workers: int = 0
    seed: int = 0
    out: Path = Path("results")
    data_root: Path | None = None
    resume: str | None = None  # a checkpoint file, a run directory, or "auto"
    validate: bool = True
    val_limit: int | None = None
    val_batch_size: int | None = None
    progress: bool = True
    download: bool = True
    command: str = ""

    def check(self) -> None:
        """Refuse values the command line's own types cannot rule out for Python callers."""
        from ..dtypes import check_dtype  # imports torch, which the CLI's start-up must not

        check_dtype(self.dtype, TRAIN_DTYPES)
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("--max-steps must be a positive integer")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ConfigError(f"val_batch_size must be a positive integer or None, got {self.val_batch_size}")


def check_precision_device(dtype: str, device_type: str) -> None:
    if dtype != "float32" and device_type not in REDUCED_PRECISION_DEVICES:
        raise ConfigError(f"--dtype {dtype} trains under CUDA autocast only", hint="use --dtype float32 on CPU")


# ----------------------------------------------------------------------------------------------------------
# Routing --set keys


def _fields(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj) if f.init} if obj is not None else set()


def method_option_keys(method_cls: type) -> set[str]:
    config_cls = getattr(method_cls, "Config", None)
    return _fields(config_cls) if dataclasses.is_dataclass(config_cls) else set()


def _override(obj: Any, overrides: Mapping[str, Any], owner: str) -> Any:
    """``obj`` (a dataclass instance) with string/typed ``overrides`` converted by its field types."""
    if not overrides:
        return obj
    # build_config validates and converts each value; the fields without a default come from ``obj``
    required = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    converted = build_config(type(obj), {**required, **overrides}, owner)
    return dataclasses.replace(obj, **{k: getattr(converted, k) for k in overrides})


def split_options(method_cls: type, recipe: TrainingRecipe, options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Route each ``--set`` key to the one place that knows it: the method's options, its training settings, or
    the recipe's generic fields; a key known to none, or to more than one, is an error."""
    owners = {"method option": method_option_keys(method_cls), "training setting": _fields(recipe.method),
              "recipe field": _fields(recipe) - {"method"}}
    routed: dict[str, dict[str, Any]] = {owner: {} for owner in owners}
    for key, value in options.items():
        claims = [owner for owner, keys in owners.items() if key in keys]
        if len(claims) > 1:  # a method and its trainer must not share a name: one of them would silently lose
            raise ConfigError(f"--set {key} is ambiguous: {method_cls.__name__} has it as a {' and a '.join(claims)}",
                              hint="rename one of them in the method or its trainer")
        if not claims:
            known = sorted(set().union(*owners.values()))
            close = difflib.get_close_matches(key, known, n=3)
            raise ConfigError(f"{method_cls.__name__} has no option or training setting {key!r}",
                              hint=(f"did you mean {', '.join(close)}? " if close else "")
                              + f"valid keys: {', '.join(known)}")
        routed[claims[0]][key] = value
    return routed["method option"], routed["training setting"], routed["recipe field"]


def pick_preset(presets: Mapping[str, TrainingRecipe], preset: str | None) -> tuple[str, TrainingRecipe]:
    """``(name, recipe)`` of ``--preset`` (None: the first preset)."""
    name = preset or next(iter(presets))
    if name not in presets:
        raise ConfigError(f"unknown training preset {name!r}", hint=f"use one of {', '.join(presets)}")
    return name, presets[name]


def resolve_recipe(presets: Mapping[str, TrainingRecipe], preset: str | None, settings: Mapping[str, Any],
                   recipe_overrides: Mapping[str, Any], opts: TrainOptions) -> tuple[str, TrainingRecipe]:
    """The preset's recipe with the routed ``--set`` keys, then the command line's own overrides."""
    name, recipe = pick_preset(presets, preset)
    if recipe.method is not None:
        recipe = dataclasses.replace(recipe, method=_override(recipe.method, settings, "training settings"))
    recipe = _override(recipe, recipe_overrides, "training recipe")
    cli = {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in cli.items() if v is not None})
    return name, recipe


def canvas_notice(method: str, options: Mapping[str, Any], method_config: Any, preset: str,
                  recipe: TrainingRecipe) -> str | None:
    """Training images go to the recipe's ``train_resolution``; a method's ``resolution`` option is its inference
    (and validation) canvas only. When ``--set resolution`` was given without ``train_resolution`` and the two
    differ, say which applies where (MARCO's preset trains at 840 px whatever ``resolution`` says)."""
    inference = getattr(method_config, "resolution", None)
    if "resolution" not in options or "train_resolution" in options or inference in (None, recipe.train_resolution):
        return None
    return (f"resolution={inference} is {method}'s inference and validation canvas; training uses "
            f"train_resolution={recipe.train_resolution} (preset {preset!r}); add --set train_resolution={inference} "
            f"to train at {inference} px")


# ----------------------------------------------------------------------------------------------------------
# Building the method to train


@dataclass
class MethodToTrain:
    """The built method, its trainer and the recipe the options resolved to."""

    matcher: Any
    trainer: Trainable
    preset: str
    recipe: TrainingRecipe


def build_for_training(method_cls: type, opts: TrainOptions) -> MethodToTrain:
    """Build the method from its options and route the other ``--set`` keys by its trainer's presets.

    The presets decide how keys split, but a trainer built from the matcher knows its presets only once the
    matcher is built: the matcher is built from the keys its ``Config`` knows, then the rest is routed. When the
    presets are known from the class, a wrong ``--preset`` or key is reported before the (perhaps downloading)
    build, and that routing is the one used.
    """
    options = dict(opts.options)
    method_keys = method_option_keys(method_cls)
    defaults = {k: v for k, v in training_method_defaults(method_cls, opts.seed).items() if k in method_keys}
    known = class_presets(method_cls)
    routed = split_options(method_cls, pick_preset(known, opts.preset)[1], options) if known else None
    matcher = method_cls(**{**defaults, **{k: v for k, v in options.items() if k in method_keys}})
    trainer = trainer_for(matcher, opts.method)
    presets = dict(trainer.training_presets())
    if not presets:
        raise ConfigError(f"{type(trainer).__name__} defines no training preset")
    if routed is None:  # an unknown --preset is reported by resolve_recipe, after the keys (routed by the first)
        routed = split_options(method_cls, presets.get(opts.preset or "", next(iter(presets.values()))), options)
    _, for_settings, for_recipe = routed
    preset, recipe = resolve_recipe(presets, opts.preset, for_settings, for_recipe, opts)
    return MethodToTrain(matcher, trainer, preset, recipe)
