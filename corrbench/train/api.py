"""What a method provides to be trained, and how the engine finds it.

A method becomes trainable in one of two ways:

- it implements ``Trainable`` itself (``TrainerBase`` supplies the optional parts), or
- its class names a trainer in its ``trainer`` attribute: a ``Trainable`` class whose constructor takes the
  built matcher, or a string that ``TRAINERS`` resolves.

A trainer string is resolved by ``TRAINERS``, a ``corrbench.registry.Registry`` like ``METHODS`` and
``BENCHMARKS``: a registered name (``@register_trainer("name")``, or an entry point in the group
``corrbench.trainers``) or a ``path/to/file.py:Class`` reference, with the registry's did-you-mean error for an
unknown name (``corrbench ls trainers`` lists the names). A ``package.module:Class`` import path is accepted
too, imported and checked as the registry imports and checks an entry point's target: it is how corrbench's
own methods declare their trainers (``MARCOMatcher.trainer = "corrbench.methods.marco.training:MARCOTrainer"``),
since a path needs no entry point, so an install whose metadata predates a trainer still finds it.

``TrainingRecipe``'s defaults are neutral (no weight decay, no clipping, a constant learning rate unless the
trainer's ``lr_scheduler`` returns a schedule); the numbers a method is trained
with (optimiser, learning rate, batch, epochs, canvas) have no default: each method's presets state them.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from ..errors import ConfigError, CorrbenchError
from ..registry import Registry, import_target, is_file_reference

if TYPE_CHECKING:  # torch loads where it is used, so `corrbench --help` starts fast
    import torch
    from torch import nn

OPTIMIZERS = ("adamw", "adam")


class TrainingError(CorrbenchError):
    """Training cannot go on (a non-finite loss, an unusable checkpoint)."""


@dataclass(frozen=True, kw_only=True)
class TrainingRecipe:
    """Hyper-parameters of one training preset.

    optimizer: ``adamw`` or ``adam`` (torch's, default betas and eps); constant ``lr``; ``weight_decay``.
    batch_size: pairs per optimisation step over all processes. epochs: passes over the training split.
    clip_grad_norm: max global gradient norm, or None for no clipping.
    train_resolution, train_resize, masks: the training canvas and object masks
        (``corrbench.train.data.TrainDataOptions``; named apart from the methods' inference options).
    flip_views: also give every pair mirrored copies of its images with left/right-aware keypoints
        (GeoAware-SC's pose-aware flip augmentation; ``corrbench.train.data``, "flip views"). Written to
        ``train.json`` and the run identity only when on, so the identities of runs without it are unchanged.
        Refused for a trainer whose ``uses_flip_views(recipe)`` says it would not read them.
    method: the method's own training settings (a dataclass; ``--set`` overrides its fields), or None.

    Keyword-only, so the required fields keep their place: the field order is the order of the recipe in
    ``train.json`` and checkpoints.
    """

    optimizer: str
    lr: float
    weight_decay: float = 0.0
    batch_size: int
    epochs: int
    clip_grad_norm: float | None = None
    train_resolution: int
    train_resize: str = "auto"
    masks: str = "auto"
    flip_views: bool = False
    method: Any = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}", hint=f"use one of {', '.join(OPTIMIZERS)}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.batch_size >= 1 and self.epochs >= 1):
            raise ConfigError(
                f"invalid recipe: lr {self.lr}, weight_decay {self.weight_decay}, batch_size {self.batch_size}, "
                f"epochs {self.epochs}", hint="lr > 0, weight_decay >= 0, batch_size >= 1, epochs >= 1")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"clip_grad_norm must be positive or none, got {self.clip_grad_norm}")
        if self.method is not None and not dataclasses.is_dataclass(self.method):
            raise ConfigError("TrainingRecipe.method must be a dataclass instance of the method's settings")

    def data_options(self, dataset: str, auto_resize: Callable[[str], str]):
        """The data pipeline's options for ``dataset``; ``auto_resize``: the trainer's ``auto_train_resize``."""
        from .data import TrainDataOptions, resolve_resize  # imports torch, which the CLI's start-up must not

        resize = resolve_resize(self.train_resize, dataset, auto_resize)
        return TrainDataOptions(resolution=self.train_resolution, resize=resize, masks=self.masks,
                                flip_dataset=dataset if self.flip_views else None)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method"}
        if not self.flip_views:  # absent when off: recipes from before the field keep their JSON and run ids
            del data["flip_views"]
        data["method"] = None if self.method is None else _plain(dataclasses.asdict(self.method))
        return data


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class TrainingPlan:
    """What the engine tells a trainer before the first step (schedules depend on the training length)."""

    steps_per_epoch: int
    epochs: int
    device: torch.device
    dtype: str
    world_size: int = 1
    rank: int = 0
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs


@dataclass
class StepOutput:
    """What ``training_step`` returns.

    loss: the scalar the engine backpropagates.
    losses: named terms, logged under ``losses`` (tensors or floats).
    diagnostics: other numbers worth logging (``sigma``, mined matches, ...), logged as top-level fields.
    seconds: wall-clock seconds of the method's stages (``student_forward``, ``teacher_forward``,
        ``mining``, ...), logged under ``seconds`` beside the engine's ``data``, ``backward``, ``optimizer``.
    """

    loss: torch.Tensor
    losses: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Trainable(Protocol):
    """What the engine needs from a method to train it (``TrainerBase`` implements the optional parts).

    The trainer owns everything method-specific (losses, teacher, schedules); the engine owns the loop,
    data, optimiser, devices, autocast, checkpoints, logging and validation.
    """

    def training_presets(self) -> Mapping[str, TrainingRecipe]:
        """Named recipes; the first is the default (``--preset``). Make it a static or class method when the
        recipes do not depend on the built matcher: ``corrbench train`` then rejects an unknown ``--preset`` or
        ``--set`` key before it builds (and perhaps downloads) the model."""

    def configure_training(self, recipe: TrainingRecipe, plan: TrainingPlan) -> None:
        """Called once on the training device before the first step (and before a resume's state is loaded)."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimiser updates (everything else stays frozen)."""

    def student(self) -> nn.Module:
        """The module holding every trainable parameter; DDP wraps it in multi-process runs."""

    def bind_student(self, module: nn.Module) -> None:
        """The (possibly DDP-wrapped) student; the training step must call it for the student's forward."""

    def training_step(self, batch: Any, step: int, epoch: int) -> StepOutput:
        """Forward and losses for one batch (``step``: global 0-based index of this optimisation step)."""

    def on_optimizer_step(self, step: int) -> Mapping[str, float]:
        """After ``optimizer.step()`` (EMA teacher update); returns diagnostics to log."""

    def auto_train_resize(self, dataset: str) -> str:
        """The resize rule (``stretch`` or ``pad``) a recipe's ``train_resize="auto"`` gives ``dataset`` (a
        ``BenchmarkSpec.dataset`` key): the method's choice, see ``corrbench.train.data``."""

    def release_state(self) -> dict[str, Any]:
        """The checkpoint in the method's release layout (e.g. ``{"model": state_dict}``)."""

    def load_release_state(self, state: Mapping[str, Any]) -> None: ...

    def extra_state(self) -> dict[str, Any]:
        """What else resuming needs (e.g. the EMA teacher), stored under ``trainer``."""

    def load_extra_state(self, state: Mapping[str, Any]) -> None: ...


class TrainerBase:
    """Defaults for the optional parts of ``Trainable``: no hooks, no extra state, the student as bound."""

    _bound_student: nn.Module | None = None

    def bind_student(self, module: nn.Module) -> None:
        # Not registered as a submodule: a trainer may itself be a Module (or be the student), and a DDP
        # wrapper inside the matcher would put its parameters in the state dict twice.
        object.__setattr__(self, "_bound_student", module)

    def student_forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call the bound (possibly DDP-wrapped) student, or the student itself before binding."""
        module = self._bound_student if self._bound_student is not None else self.student()
        return module(*args, **kwargs)

    def on_optimizer_step(self, step: int) -> Mapping[str, float]:
        return {}

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        """Optional (the engine looks it up by name; not part of ``Trainable``): a ``torch.optim.lr_scheduler``
        over ``optimizer``, stepped after every optimiser step and saved in the checkpoints, or None for the
        recipe's constant ``lr``. Called once, after ``configure_training``."""
        return None

    def auto_train_resize(self, dataset: str) -> str:
        return "stretch"  # neutral: every dataset stretched to the square canvas

    def uses_flip_views(self, recipe: TrainingRecipe) -> bool:
        """Whether ``training_step`` reads ``batch.flip`` under ``recipe`` (``check_flip_views``)."""
        return False

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


def check_flip_views(trainer: Any, recipe: TrainingRecipe, method: str) -> None:
    """Refuse ``flip_views`` for a trainer that would not read them: the mirrored images cost a load and,
    in the trainer, two more forwards per pair, and a run recorded with them should have used them. A trainer
    says it reads them with ``uses_flip_views(recipe)`` (``TrainerBase``: no)."""
    uses = getattr(trainer, "uses_flip_views", None)
    if recipe.flip_views and not (callable(uses) and uses(recipe)):
        raise ConfigError(f"flip_views: the trainer of {method!r} does not use flip views with this recipe",
                          hint="drop --set flip_views=true (or pick an objective that reads them, e.g. MARCO's "
                          "objective=geosc)")


# ----------------------------------------------------------------------------------------------------------
# Finding a method's trainer


def _protocol_methods() -> list[str]:
    return [n for n in vars(Trainable) if not n.startswith("_") and callable(vars(Trainable)[n])]


def _check_trainer(name: str, obj: Any) -> None:
    if not isinstance(obj, type):
        raise ConfigError(f"trainer {name!r} resolves to {obj!r}, which is not a class",
                          hint="name a class that implements corrbench.train.api.Trainable")


TRAINERS: Registry = Registry("trainer", "corrbench.trainers", _check_trainer)


def register_trainer(name: str, *, aliases: tuple[str, ...] = ()):
    """Class decorator: ``@register_trainer("my-trainer")`` lets a method declare ``trainer = "my-trainer"``."""
    return TRAINERS.register(name, aliases=aliases)


def _is_import_path(reference: str) -> bool:
    return ":" in reference and not is_file_reference(reference)


def trainer_class(method_cls: type) -> type | None:
    """The class a method's ``trainer`` attribute names (see the module docstring), or None."""
    target = getattr(method_cls, "trainer", None)
    if not isinstance(target, str):
        return target
    if _is_import_path(target):
        resolved = import_target(target)
        _check_trainer(target, resolved)
        return resolved
    return TRAINERS.get(target)


def class_presets(method_cls: type) -> dict[str, TrainingRecipe] | None:
    """The training presets of a method known without building it (a static or class ``training_presets``)."""
    owner = trainer_class(method_cls) or method_cls
    hook = inspect.getattr_static(owner, "training_presets", None)
    return dict(owner.training_presets()) if isinstance(hook, (staticmethod, classmethod)) else None


def training_method_defaults(method_cls: type, seed: int) -> dict[str, Any]:
    """Method options a training run starts from unless ``--set`` says otherwise.

    A trainer (or a method that is its own trainer) may define ``training_method_defaults(seed)``: MARCO's
    starts from freshly initialised adapters and head (``checkpoint=random``, drawn from the run's seed) instead
    of the released checkpoint its inference defaults to.
    """
    owner = trainer_class(method_cls) or method_cls
    hook = getattr(owner, "training_method_defaults", None)
    return dict(hook(seed)) if callable(hook) else {}


def trainer_for(matcher: nn.Module, method: str = "") -> Trainable:
    """The ``Trainable`` of a built method: the matcher itself, or an instance of its trainer class."""
    if isinstance(matcher, Trainable):
        return matcher
    target = trainer_class(type(matcher))
    name = method or type(matcher).__name__
    if target is None:
        raise ConfigError(
            f"method {name!r} cannot be trained: it implements no training step",
            hint="train a method that implements corrbench.train.api.Trainable, e.g. --method marco",
        )
    trainer = target(matcher)
    if not isinstance(trainer, Trainable):
        missing = [n for n in _protocol_methods() if not callable(getattr(trainer, n, None))]
        raise ConfigError(f"the trainer of {name!r} ({type(trainer).__name__}) lacks {', '.join(missing)}")
    return trainer
