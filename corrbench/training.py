"""The training engine: any method that implements ``Trainable`` trains on any benchmark's training split.

``train(TrainOptions)`` (and ``corrbench train``) runs, in order:

1. the method is built under ``seed`` (identically in every process) with its trainer's
   ``training_method_defaults`` and the ``--set`` keys its options know, and asked for its trainer
   (``trainer_for``); a named preset of the trainer's recipe (``TrainingRecipe``: optimiser, lr, batch, epochs,
   clipping, canvas, masks, and the method's own settings) is picked, then overridden by the other ``--set``
   keys and ``--epochs`` / ``--batch-size`` / ``--lr`` (``split_options``: each key must belong to exactly one);
2. seeds: python, numpy and torch reseeded with ``seed + rank`` (the authors' ``make_deterministic``); the
   order of pairs comes from its own generator seeded with ``seed + epoch`` (``train.data.EpochBatches``);
3. data: the benchmark's dataset (its spec's ``dataset`` and ``data_dir``) read through its adapter, split
   ``trn`` for training (``corrbench.train.data``) and ``val`` for model selection;
4. per step: ``training_step`` under autocast (bf16 or fp16 on CUDA when asked), ``loss.backward()``
   (loss-scaled in fp16: ``precision.LossScaling``; its state is the checkpoint's ``grad_scaler``), gradient
   clipping of the unscaled gradients, optimiser step (skipped by fp16 on overflow, logged as ``skipped``),
   ``on_optimizer_step`` (the EMA teacher); constant learning rate;
5. per epoch: validation PCK on the ``val`` pairs with the benchmark's own protocol (the method's
   ``predict`` and ``Protocol.score`` + ``PCKAccumulator``, as ``corrbench run`` scores), then a checkpoint;
   ``best.pth`` follows the best PCK@0.1 per image over all pairs.

Run directory: ``<out>/train/<method>/<benchmark>/<run-id>/`` (the id hashes everything that decides the
training except its length, so ``--resume auto`` finds it again and ``--epochs`` can grow):

``train.json``                the resolved configuration, method info, data counts, environment
``log.jsonl``                 one line per optimisation step and per validation (``LOG_FIELDS``)
``summary.json``              validation history, best and last checkpoint, steps done
``checkpoints/epoch_NNN.pth`` after each epoch (``step_NNNNNNN.pth`` when ``--max-steps`` stops mid-epoch)
``checkpoints/last.pth``, ``best.pth``   hard links to the latest and the best of those

A checkpoint is the method's release layout (for MARCO ``{"model": adapters + head, "ema": EMA teacher}``,
which the authors' code loads as is) plus resume keys (``RESUME_KEYS``): ``optimizer``, ``trainer`` (the
method's other state, e.g. MARCO's mining generator), ``step``, ``epoch``, ``batch_in_epoch``, ``rng`` (every
process's python, numpy, torch and CUDA generator states), ``config`` (the identity and the resolved recipe)
and ``history``. Everything is tensors and plain values: checkpoints load with ``torch.load(weights_only=True)``.
``epoch`` is the index of the last completed epoch (the authors' convention, so their ``resume_from_checkpoint``
starts at ``epoch + 1``) and ``batch_in_epoch`` the batches already done of the next one (non-zero only when
``--max-steps`` stopped a run mid-epoch). ``--resume`` restores all of it, so a resumed run continues
bit-identically on CPU.

Multi-GPU: ``torchrun --nproc_per_node G -m corrbench.cli train ...`` (each process takes ``cuda:LOCAL_RANK``;
gloo on CPU). The student module is wrapped in ``DistributedDataParallel`` and bound back to the trainer,
whose step calls it; ``--batch-size`` is the effective batch (``G`` x per-process batch, as the authors'
``train.py`` divides it) and the batches of one step over all processes are exactly the single-process batch
of that step (``EpochBatches`` plays ``DistributedSampler`` + ``set_epoch``). A trainer that normalises its
losses by counts summed over processes (MARCO's does) then computes the single-process gradient; process 0
alone logs, validates and writes checkpoints, and a resume needs the same number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import inspect
import json
import os
import random
import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import click

from .errors import ConfigError, CorrbenchError, DataError
from .files import json_identity_hash, replacing, write_json_atomic

if TYPE_CHECKING:  # torch loads inside the functions that use it, so `corrbench --help` starts fast
    import torch
    from torch import nn

TRAIN_SPLIT = "trn"
VAL_SPLIT = "val"
#: The validation number that picks the best checkpoint: PCK@0.1, per image, pooled over all pairs.
SELECTION_METRIC = ("pck", "image", "all", "0.1")
OPTIMIZERS = ("adamw", "adam")
TRAIN_DTYPES = ("float32", "bfloat16", "float16")
#: Devices that train in bfloat16 / float16: CPU autocast works but is slower than fp32 and not what anyone
#: trains with, so a reduced-precision CPU run is refused rather than silently slow.
REDUCED_PRECISION_DEVICES = ("cuda",)
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "train.json"
SUMMARY_FILE = "summary.json"
#: Keys the engine adds to a checkpoint next to the method's release layout.
RESUME_KEYS = ("optimizer", "trainer", "step", "epoch", "batch_in_epoch", "rng", "config", "history")
#: The fp16 loss scaler's state, in checkpoints of ``--dtype float16`` runs only.
SCALER_KEY = "grad_scaler"
#: Fields of a ``"event": "step"`` log line (diagnostics such as ``sigma`` and ``ema_momentum`` come in
#: addition, as top-level fields, when the method reports them).
LOG_FIELDS = ("event", "step", "epoch", "batch", "lr", "loss", "losses", "grad_norm", "seconds")
VALIDATION_FIELDS = ("event", "step", "epoch", "pck", "selection", "best", "pairs", "seconds")


class TrainingError(CorrbenchError):
    """Training cannot go on (a non-finite loss, an unusable checkpoint)."""


# ----------------------------------------------------------------------------------------------------------
# What a method provides


@dataclass(frozen=True)
class TrainingRecipe:
    """Hyper-parameters of one training preset.

    optimizer: ``adamw`` or ``adam`` (torch's, default betas and eps); constant ``lr``; ``weight_decay``.
    batch_size: pairs per optimisation step over all processes. epochs: passes over the training split.
    clip_grad_norm: max global gradient norm, or None for no clipping.
    train_resolution, train_resize, masks: the training canvas and object masks
        (``corrbench.train.data.TrainDataOptions``; named apart from the methods' inference options).
    method: the method's own training settings (a dataclass; ``--set`` overrides its fields), or None.
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 12
    epochs: int = 8
    clip_grad_norm: float | None = 0.1
    train_resolution: int = 630
    train_resize: str = "auto"
    masks: str = "auto"
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
        from .train.data import TrainDataOptions, resolve_resize

        resize = resolve_resize(self.train_resize, dataset, auto_resize)
        return TrainDataOptions(resolution=self.train_resolution, resize=resize, masks=self.masks)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method"}
        data["method"] = None if self.method is None else _plain(dataclasses.asdict(self.method))
        return data


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

    def auto_train_resize(self, dataset: str) -> str:
        return "stretch"  # neutral: every dataset stretched to the square canvas

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        pass


def trainer_class(method_cls: type) -> type | None:
    """The class named by a method's ``trainer`` attribute (a class or ``"module:Class"``), or None."""
    target = getattr(method_cls, "trainer", None)
    if isinstance(target, str):
        from .registry import import_target

        target = import_target(target)
    return target


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
    """The ``Trainable`` of a built method: the matcher itself, or what its class's ``trainer`` attribute names.

    A method becomes trainable by implementing ``Trainable`` directly or by setting ``trainer`` to a class
    (or a ``"module:Class"`` string) whose constructor takes the matcher.
    """
    if isinstance(matcher, Trainable):
        return matcher
    target = trainer_class(type(matcher))
    name = method or type(matcher).__name__
    if target is None:
        raise ConfigError(
            f"method {name!r} cannot be trained: it implements no training step",
            hint="train a method that implements corrbench.training.Trainable, e.g. --method marco",
        )
    trainer = target(matcher)
    if not isinstance(trainer, Trainable):
        missing = [n for n in _protocol_methods() if not callable(getattr(trainer, n, None))]
        raise ConfigError(f"the trainer of {name!r} ({type(trainer).__name__}) lacks {', '.join(missing)}")
    return trainer


def _protocol_methods() -> list[str]:
    return [n for n in vars(Trainable) if not n.startswith("_") and callable(vars(Trainable)[n])]


class StageTimer:
    """Seconds per named stage of a step, synchronising CUDA so asynchronous kernels count where they run.

    ``with timer("student_forward"): ...``; ``timer.seconds`` is a dict of totals.
    """

    def __init__(self, device: torch.device | str | None = None):
        import torch
        
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        from .runtime import synchronize

        synchronize(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.seconds[name] += time.perf_counter() - started


# ----------------------------------------------------------------------------------------------------------
# Options and outcome


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


@dataclass
class TrainOutcome:
    directory: Path
    steps: int
    epochs_done: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    last_checkpoint: Path | None

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE


# ----------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class Processes:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        import torch
        
        if self.distributed:
            torch.distributed.barrier()

    def mean(self, values: Sequence[float], device: torch.device) -> list[float]:
        """The mean of each value over processes (for logging)."""
        import torch
        
        if not self.distributed or not values:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return (t / self.world_size).tolist()

    def gather(self, obj: Any) -> list[Any]:
        import torch
        
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out


def start_processes(device_name: str) -> tuple[Processes, torch.device]:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); pick this process's device."""
    import torch
    
    from .runtime import resolve_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(), resolve_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return Processes(rank, world, local), torch.device("cuda", local) if cuda else torch.device("cpu")


# ----------------------------------------------------------------------------------------------------------
# Seeds and generator states


def rng_state() -> dict[str, Any]:
    """This process's generator states as tensors and plain values, so checkpoints load with ``weights_only``."""
    import numpy as np
    import torch
    
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np
    import torch
    
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------------
# Configuration


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _fields(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj) if f.init} if obj is not None else set()


def _override(obj: Any, overrides: Mapping[str, Any], owner: str) -> Any:
    """``obj`` (a dataclass instance) with string/typed ``overrides`` converted by its field types."""
    from .config import build_config

    if not overrides:
        return obj
    converted = build_config(type(obj), overrides, owner)  # validates and converts each value
    return dataclasses.replace(obj, **{k: getattr(converted, k) for k in overrides})


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


def split_options(method_cls: type, recipe: TrainingRecipe, options: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Route each ``--set`` key to the one place that knows it: the method's options, its training settings, or
    the recipe's generic fields; a key known to none, or to more than one, is an error."""
    method_keys = _fields(method_cls.Config) if dataclasses.is_dataclass(getattr(method_cls, "Config", None)) else set()
    setting_keys = _fields(recipe.method)
    recipe_keys = _fields(recipe) - {"method"}
    for_method, for_settings, for_recipe = {}, {}, {}
    for key, value in options.items():
        owners = [name for name, keys in (("method option", method_keys), ("training setting", setting_keys),
                                          ("recipe field", recipe_keys)) if key in keys]
        if len(owners) > 1:  # a method and its trainer must not share a name: one of them would silently lose
            raise ConfigError(f"--set {key} is ambiguous: {method_cls.__name__} has it as a {' and a '.join(owners)}",
                              hint="rename one of them in the method or its trainer")
        if key in method_keys:
            for_method[key] = value
        elif key in setting_keys:
            for_settings[key] = value
        elif key in recipe_keys:
            for_recipe[key] = value
        else:
            import difflib

            known = sorted(method_keys | setting_keys | recipe_keys)
            close = difflib.get_close_matches(key, known, n=3)
            raise ConfigError(
                f"{method_cls.__name__} has no option or training setting {key!r}",
                hint=(f"did you mean {', '.join(close)}? " if close else "") + f"valid keys: {', '.join(known)}",
            )
    return for_method, for_settings, for_recipe


def pick_preset(presets: Mapping[str, TrainingRecipe], preset: str | None) -> tuple[str, TrainingRecipe]:
    """``(name, recipe)`` of ``--preset`` (None: the first preset)."""
    name = preset or next(iter(presets))
    if name not in presets:
        raise ConfigError(f"unknown training preset {name!r}", hint=f"use one of {', '.join(presets)}")
    return name, presets[name]


def resolve_recipe(trainer: Trainable, preset: str | None, settings: Mapping[str, Any], recipe_overrides: Mapping[str, Any],
                   opts: TrainOptions) -> tuple[str, TrainingRecipe]:
    presets = dict(trainer.training_presets())
    if not presets:
        raise ConfigError(f"{type(trainer).__name__} defines no training preset")
    name, recipe = pick_preset(presets, preset)
    if recipe.method is not None:
        recipe = dataclasses.replace(recipe, method=_override(recipe.method, settings, "training settings"))
    recipe = _override(recipe, recipe_overrides, "training recipe")
    cli = {"epochs": opts.epochs, "batch_size": opts.batch_size, "lr": opts.lr}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in cli.items() if v is not None})
    return name, recipe


def run_identity(method: str, method_cls: type, method_config: dict, preset: str, recipe: TrainingRecipe,
                 benchmark_key: str, seed: int, dtype: str) -> dict[str, Any]:
    """What decides the trained weights, except the training length (so a run can be extended)."""
    recipe_json = recipe.to_json()
    recipe_json.pop("epochs")
    return {
        "method": method,
        "class": f"{method_cls.__module__}:{method_cls.__qualname__}",
        "config": method_config,
        "preset": preset,
        "recipe": recipe_json,
        "benchmark": benchmark_key,
        "seed": seed,
        "dtype": dtype,
    }


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


def _save_atomic(obj: Any, path: Path) -> None:
    import torch

    with replacing(path) as tmp:
        torch.save(obj, tmp)


def _link(target: Path, alias: Path) -> None:
    """``alias`` becomes a hard link to ``target`` (a copy where links are impossible), replaced atomically."""
    with replacing(alias) as tmp:
        try:
            os.link(target, tmp)
        except OSError:
            import shutil

            shutil.copyfile(target, tmp)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    import torch
    
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"checkpoint not found: {path}", hint="pass a checkpoint file, a run directory, or auto")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise TrainingError(f"cannot read checkpoint {path}: {exc}", hint="it is incomplete or not a torch file") from None
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise TrainingError(
            f"{path} has no resume state ({', '.join(missing)} missing): it holds weights only",
            hint="resume from a checkpoint corrbench train wrote (checkpoints/last.pth of a run)",
        )
    return state


def _resume_file(resume: str, run_dir: Path) -> Path | None:
    if resume == "auto":
        last = run_dir / CHECKPOINT_DIR / "last.pth"
        return last if last.is_file() else None
    path = Path(resume).expanduser()
    if path.is_dir():
        for candidate in (path / CHECKPOINT_DIR / "last.pth", path / "last.pth"):
            if candidate.is_file():
                return candidate
        raise TrainingError(f"{path} holds no checkpoints/last.pth", hint="pass a checkpoint file or a run directory")
    return path


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


# ----------------------------------------------------------------------------------------------------------
# Validation


def validate(matcher: nn.Module, pairs: Sequence[Any], spec: Any, device: torch.device, dtype: str,
             batch_size: int, workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Predict ``pairs`` with the matcher's own inference and score them with the benchmark's protocol.

    Returns the ``PCKAccumulator.summary()`` (every aggregation, in percent).
    """
    from tqdm.auto import tqdm

    from .batching import batch_loader
    from .dtypes import autocast
    from .feature_cache import FeatureCache
    from .metrics import PCKAccumulator

    cache = getattr(matcher, "feature_cache", None)
    if isinstance(cache, FeatureCache):  # weights changed since the last validation: no stale features
        matcher.feature_cache = FeatureCache(cache.max_bytes)
    was_training = matcher.training
    matcher.eval()
    accumulator = PCKAccumulator(spec.protocol.alphas)
    loader = batch_loader(pairs, batch_size, workers=workers, with_masks="masks" in getattr(matcher, "requires", ()),
                          with_ground_truth=getattr(matcher, "uses_ground_truth", False),
                          pin_memory=device.type == "cuda")
    done = 0
    with tqdm(total=len(pairs), desc="validate", unit="pair", disable=not progress, leave=False) as bar:
        for batch in loader:
            with autocast(device, dtype):
                points = matcher.predict(batch.to(device)).points.float().cpu().numpy()
            for pred, pair in zip(points, pairs[done : done + batch.size]):
                accumulator.add(spec.protocol.score(pair, pred[: pair.num_keypoints]))
            done += batch.size
            bar.update(batch.size)
    if isinstance(cache, FeatureCache):
        matcher.feature_cache = FeatureCache(cache.max_bytes)
    matcher.train(was_training)
    return accumulator.summary()


def selection_value(summary: Mapping[str, Any]) -> float | None:
    metric, by, avg, alpha = SELECTION_METRIC
    try:
        return summary[metric][by][avg][alpha]
    except KeyError:
        raise ConfigError(f"the benchmark's protocol computes no PCK@{alpha}, which selects the best checkpoint") from None


# ----------------------------------------------------------------------------------------------------------
# The loop


def _optimizer(recipe: TrainingRecipe, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    import torch
    
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)


def _number(value: Any) -> float:
    import torch
    
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)



class _Run:
    """The state of one training run in this process (kept together so the loop reads top to bottom)."""

    def __init__(self, opts: TrainOptions):
        import torch
        
        from .data_root import resolve_data_root
        from .datasets import make_adapter
        from .evaluate import method_name
        from .dtypes import check_dtype
        from .registry import BENCHMARKS, METHODS
        from .train.data import TrainingPairs

        check_dtype(opts.dtype, TRAIN_DTYPES)
        if opts.max_steps is not None and opts.max_steps < 1:
            raise ConfigError("--max-steps must be a positive integer")
        if opts.val_batch_size is not None and opts.val_batch_size < 1:
            raise ConfigError(f"val_batch_size must be a positive integer or None, got {opts.val_batch_size}")
        self.opts = opts
        self.procs, self.device = start_processes(opts.device)
        if opts.dtype != "float32" and self.device.type not in REDUCED_PRECISION_DEVICES:
            raise ConfigError(f"--dtype {opts.dtype} trains under CUDA autocast only", hint="use --dtype float32 on CPU")
        if self.device.type == "cuda":  # as the authors' train.py on Ampere and newer
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        self.spec = BENCHMARKS.get(opts.benchmark)
        method_cls = METHODS.get(opts.method)
        self.method = method_name(opts.method, method_cls)

        # The method is built from the run's seed (the same in every process), so random initialisations are
        # reproducible on resume and equal across processes; ``train`` reseeds with ``seed + rank`` afterwards.
        from .runtime import seed_everything

        seed_everything(opts.seed, deterministic_cudnn=True)
        self.matcher, self.trainer, self.preset, self.recipe = self._build(method_cls, dict(opts.options))
        self.matcher.to(self.device)
        notice = canvas_notice(self.method, opts.options, getattr(self.matcher, "config", None), self.preset,
                               self.recipe)
        self.notices = [notice] if notice else []
        if notice and self.procs.main:
            click.secho(f"notice: {notice}", fg="yellow", err=True)

        from .config import config_to_json

        method_config = config_to_json(self.matcher.config) if hasattr(self.matcher, "config") else {}
        self.identity = run_identity(self.method, method_cls, method_config, self.preset, self.recipe,
                                     self.spec.key, opts.seed, opts.dtype)
        from .results import safe_name

        self.run_dir = Path(opts.out) / "train" / safe_name(self.method) / safe_name(self.spec.name) / json_identity_hash(self.identity)[:12]

        adapter = make_adapter(self.spec, resolve_data_root(opts.data_root))
        adapter.prepare(progress=opts.progress and self.procs.main, download=opts.download)
        train_set = adapter.pairs(TRAIN_SPLIT, self.spec.subset)
        options = self.recipe.data_options(self.spec.dataset, self.trainer.auto_train_resize)
        self.train_data = TrainingPairs(train_set.pairs, options)
        self.val_pairs: list = []
        if opts.validate:
            try:
                val_set = adapter.pairs(VAL_SPLIT, self.spec.subset)
            except (ConfigError, DataError) as exc:
                raise ConfigError(f"{self.spec.name} has no usable {VAL_SPLIT!r} split for validation: {exc.message}",
                                  hint="train with --no-validate") from None
            self.val_pairs = val_set.pairs[: opts.val_limit] if opts.val_limit else val_set.pairs
            if not self.val_pairs:
                raise ConfigError(f"{self.spec.name}'s {VAL_SPLIT!r} split is empty", hint="train with --no-validate")

    def _build(self, method_cls: type, options: dict) -> tuple:
        # The trainer's presets decide how --set keys split, but the matcher (and so its trainer) needs its
        # own options first: build it from the keys its Config knows, then route the rest.
        config_cls = getattr(method_cls, "Config", None)
        method_keys = _fields(config_cls) if dataclasses.is_dataclass(config_cls) else set()
        defaults = {k: v for k, v in training_method_defaults(method_cls, self.opts.seed).items() if k in method_keys}
        known = class_presets(method_cls)
        if known:  # report a wrong --preset / --set key before the (perhaps downloading) model build
            split_options(method_cls, pick_preset(known, self.opts.preset)[1], options)
        matcher = method_cls(**{**defaults, **{k: v for k, v in options.items() if k in method_keys}})
        trainer = trainer_for(matcher, self.opts.method)
        presets = dict(trainer.training_presets())
        base = presets.get(self.opts.preset or next(iter(presets), ""), next(iter(presets.values()), TrainingRecipe()))
        for_method, for_settings, for_recipe = split_options(method_cls, base, options)
        preset, recipe = resolve_recipe(trainer, self.opts.preset, for_settings, for_recipe, self.opts)
        return matcher, trainer, preset, recipe

    # -- files -----------------------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if self.procs.main:
            with open(self.run_dir / LOG_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def config_record(self) -> dict[str, Any]:
        from .environment import describe_environment

        return {
            "schema_version": 1,
            "command": self.opts.command,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "identity": self.identity,
            "recipe": self.recipe.to_json(),
            "max_steps": self.opts.max_steps,
            "world_size": self.procs.world_size,
            "method": {"name": self.method, **(self.matcher.info() if hasattr(self.matcher, "info") else {})},
            "benchmark": {**self.spec.to_json(), "key": self.spec.key},
            "data": {"train_split": TRAIN_SPLIT, "train_pairs": len(self.train_data), "dropped": self.train_data.dropped,
                     "resize": self.train_data.resize, "masks": self.recipe.masks,
                     "val_split": VAL_SPLIT if self.opts.validate else None, "val_pairs": len(self.val_pairs)},
            "env": describe_environment(self.device, self.opts.dtype, self.recipe.batch_size, self.opts.seed),
            "notices": self.notices,
        }


def train(opts: TrainOptions) -> TrainOutcome:
    """Train ``opts.method`` on ``opts.benchmark``'s training split (see the module docstring)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from tqdm.auto import tqdm

    from .runtime import seed_everything, synchronize
    from .dtypes import LossScaling, autocast
    from .train.data import EpochBatches, collate_training

    run = _Run(opts)
    procs, device, recipe, trainer = run.procs, run.device, run.recipe, run.trainer

    # -- where to start ------------------------------------------------------------------------------------
    resume_file = _resume_file(opts.resume, run.run_dir) if opts.resume else None
    checkpoint = load_checkpoint_file(resume_file) if resume_file is not None else None
    if checkpoint is not None:
        stored = checkpoint["config"]["identity"]
        if json_identity_hash(stored) != json_identity_hash(run.identity):
            changes = "; ".join(_differences(stored, run.identity)[:8])
            raise ConfigError(f"{resume_file} was trained with another configuration ({changes})",
                              hint="resume with the options of that run, or start a new run without --resume")
        run.run_dir = resume_file.parent.parent if resume_file.parent.name == CHECKPOINT_DIR else resume_file.parent
    elif (run.run_dir / CHECKPOINT_DIR / "last.pth").exists():
        raise ConfigError(f"{run.run_dir} already holds checkpoints of this configuration",
                          hint="continue it with --resume auto, or delete the folder to start over")

    sampler = EpochBatches(len(run.train_data), recipe.batch_size, seed=opts.seed, rank=procs.rank,
                           world_size=procs.world_size)
    steps_per_epoch = sampler.batches_per_epoch()
    plan = TrainingPlan(steps_per_epoch=steps_per_epoch, epochs=recipe.epochs, device=device, dtype=opts.dtype,
                        world_size=procs.world_size, rank=procs.rank, seed=opts.seed)
    trainer.configure_training(recipe, plan)
    parameters = list(trainer.trainable_parameters())
    if not parameters or not all(p.requires_grad for p in parameters):
        raise ConfigError(f"{run.method}: trainable_parameters() must return parameters that require gradients")
    optimizer = _optimizer(recipe, parameters)
    scaling = LossScaling(opts.dtype, device)
    # per-process streams from here on (the authors' seed + rank)
    seed_everything(opts.seed + procs.rank, deterministic_cudnn=True)

    step, epoch, batch_in_epoch = 0, 0, 0
    history: list[dict[str, Any]] = []
    if checkpoint is not None:
        trainer.load_release_state(checkpoint)
        trainer.load_extra_state(checkpoint["trainer"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaling.load_state_dict(checkpoint.get(SCALER_KEY, {}))
        # "epoch" is the index of the last completed epoch, as in the authors' checkpoints (-1: none yet).
        step, epoch, batch_in_epoch = checkpoint["step"], checkpoint["epoch"] + 1, checkpoint["batch_in_epoch"]
        history = list(checkpoint["history"])
        states = checkpoint["rng"]
        if len(states) != procs.world_size:
            raise ConfigError(f"{resume_file} was written by {len(states)} processes; this run has {procs.world_size}",
                              hint="resume with the same number of processes (bit-identical continuation needs it)")
        set_rng_state(states[procs.rank])

    student = trainer.student()
    if procs.distributed:
        trainer.bind_student(DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None))
    else:
        trainer.bind_student(student)

    loader = torch.utils.data.DataLoader(
        run.train_data, batch_sampler=sampler, num_workers=opts.workers, collate_fn=collate_training,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(opts.seed),
    )
    if procs.main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            (run.run_dir / LOG_FILE).unlink(missing_ok=True)
        write_json_atomic(run.run_dir / CONFIG_FILE, {**run.config_record(), "resumed_from": str(resume_file) if resume_file else None})
    procs.barrier()

    best = max((h for h in history if h.get("selection") is not None), key=lambda h: h["selection"], default=None)
    last_path: Path | None = resume_file

    def save(tag: str, completed_epochs: int, in_epoch: int, validation: dict[str, Any] | None) -> Path | None:
        states = procs.gather(rng_state())
        path = None
        if procs.main:
            release = trainer.release_state()
            clash = [k for k in (*RESUME_KEYS, SCALER_KEY) if k in release]
            if clash:
                raise TrainingError(f"{run.method}'s release layout uses the engine's keys {clash}")
            state = {
                **release,
                "optimizer": optimizer.state_dict(),
                **({SCALER_KEY: scaling.state_dict()} if scaling.enabled else {}),
                "trainer": trainer.extra_state(),
                "step": step,
                "epoch": completed_epochs - 1,
                "batch_in_epoch": in_epoch,
                "rng": states,
                "config": {"identity": run.identity, "recipe": recipe.to_json(), "world_size": procs.world_size},
                "history": history,
            }
            path = run.run_dir / CHECKPOINT_DIR / f"{tag}.pth"
            _save_atomic(state, path)
            _link(path, path.with_name("last.pth"))
            if validation is not None and validation.get("best"):
                _link(path, path.with_name("best.pth"))
            write_json_atomic(run.run_dir / SUMMARY_FILE, {
                "run": str(run.run_dir), "steps": step, "epochs_done": completed_epochs, "batch_in_epoch": in_epoch,
                "history": history, "best": best, "last_checkpoint": str(path),
            })
        procs.barrier()
        return path

    def run_validation(completed_epochs: int) -> dict[str, Any] | None:
        nonlocal best
        if not opts.validate:
            return None
        record = None
        if procs.main:
            started = time.perf_counter()
            summary = validate(run.matcher, run.val_pairs, run.spec, device, opts.dtype,
                               opts.val_batch_size if opts.val_batch_size is not None
                               else max(1, recipe.batch_size // procs.world_size), opts.workers,
                               progress=opts.progress)
            protocol = run.spec.protocol
            value = selection_value(summary)
            is_best = value is not None and (best is None or value > best["selection"])
            by, avg = protocol.pck_by, "all" if protocol.average == "all" else "category_mean"
            record = {"event": "validation", "step": step, "epoch": completed_epochs,
                      "pck": summary["pck"][by][avg], "pck_image_all": summary["pck"]["image"]["all"],
                      "selection": value, "best": is_best, "pairs": summary["counts"]["pairs"],
                      "seconds": round(time.perf_counter() - started, 3)}
            history.append({k: record[k] for k in ("step", "epoch", "selection", "pck", "best")})
            if is_best:
                best = {k: record[k] for k in ("step", "epoch", "selection", "pck")}
            run.log(record)
            if opts.progress:
                click.echo(f"validation after epoch {completed_epochs} (step {step}): PCK@0.1 {value:.2f}"
                           f"{' (best)' if is_best else ''}", err=True)
        procs.barrier()
        return record

    # -- epochs --------------------------------------------------------------------------------------------
    stopped = False
    while epoch < recipe.epochs and not stopped:
        sampler.set_epoch(epoch, batch_in_epoch)
        trainer.student().train()
        bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                   unit="step", disable=not (opts.progress and procs.main), leave=False)
        batches = iter(loader)
        done_here = 0
        while batch_in_epoch < steps_per_epoch:
            if opts.max_steps is not None and step >= opts.max_steps:
                stopped = True
                break
            started = time.perf_counter()
            batch = next(batches).to(device, non_blocking=True)
            synchronize(device)
            data_seconds = time.perf_counter() - started

            started = time.perf_counter()
            with autocast(device, opts.dtype):
                out = trainer.training_step(batch, step, epoch)
            synchronize(device)
            step_seconds = time.perf_counter() - started
            if not isinstance(out, StepOutput):
                raise TrainingError(f"{type(trainer).__name__}.training_step returned {type(out).__name__}, not StepOutput")
            if not torch.isfinite(out.loss.detach()).all():
                raise TrainingError(f"the training loss is {out.loss.item()} at step {step} (epoch {epoch + 1})",
                                    hint="lower --lr, or check the data of this batch: " + ", ".join(batch.pair_ids[:4]))
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            scaling.backward(out.loss)
            synchronize(device)
            backward_seconds = time.perf_counter() - started

            started = time.perf_counter()
            scaling.unscale(optimizer)
            grad_norm = (torch.nn.utils.clip_grad_norm_(parameters, recipe.clip_grad_norm)
                         if recipe.clip_grad_norm is not None else None)
            stepped = scaling.step(optimizer)  # False only in fp16, when the gradients overflowed
            hooks = dict(trainer.on_optimizer_step(step))
            synchronize(device)
            optimizer_seconds = time.perf_counter() - started

            names = ["loss", *out.losses]
            values = procs.mean([_number(out.loss), *(_number(v) for v in out.losses.values())], device)
            scaler_fields = {"loss_scale": scaling.scale(), "skipped": float(not stepped)} if scaling.enabled else {}
            diagnostics = {k: _number(v) for k, v in {**out.diagnostics, **hooks, **scaler_fields}.items()}
            reserved = set(LOG_FIELDS) & set(diagnostics)
            if reserved:
                raise TrainingError(f"diagnostics {sorted(reserved)} collide with the log's own fields")
            # The method's own stages when it reports them (plus what they leave out), else its whole forward.
            stages = dict(out.seconds) if out.seconds else {"forward": step_seconds}
            if out.seconds:
                stages["other"] = max(0.0, step_seconds - sum(out.seconds.values()))
            seconds = {"data": data_seconds, **stages, "backward": backward_seconds, "optimizer": optimizer_seconds}
            record = {"event": "step", "step": step, "epoch": epoch, "batch": batch_in_epoch,
                      "lr": optimizer.param_groups[0]["lr"], "loss": values[0], "losses": dict(zip(names[1:], values[1:])),
                      "grad_norm": None if grad_norm is None else _number(grad_norm), **diagnostics,
                      "seconds": {k: round(v, 6) for k, v in seconds.items()}}
            record["seconds"]["total"] = round(sum(seconds.values()), 6)
            run.log(record)
            step += 1
            batch_in_epoch += 1
            done_here += 1
            bar.update(1)
            bar.set_postfix(loss=f"{values[0]:.4f}")
        bar.close()
        del batches
        if batch_in_epoch >= steps_per_epoch:
            epoch += 1
            batch_in_epoch = 0
            validation = run_validation(epoch)
            last_path = save(f"epoch_{epoch:03d}", epoch, 0, validation) or last_path
        elif done_here:
            validation = run_validation(epoch)
            last_path = save(f"step_{step:07d}", epoch, batch_in_epoch, validation) or last_path

    if procs.distributed:
        torch.distributed.destroy_process_group()
    return TrainOutcome(directory=run.run_dir, steps=step, epochs_done=epoch, history=history, best=best,
                        last_checkpoint=last_path)


# ----------------------------------------------------------------------------------------------------------
# corrbench train


@click.command("train")
@click.option("--method", "-m", required=True, help="A trainable method (e.g. marco).")
@click.option("--benchmark", "-b", required=True, help="Trains on its dataset's trn split, validates on val.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Method option or training setting (repeatable).")
@click.option("--preset", default=None,
              help="Training preset of the method (MARCO: released, paper, or an ablation such as marco-sup).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Effective batch over all processes.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Override the preset's learning rate.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimisation steps in all.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(list(TRAIN_DTYPES)),
              help="bfloat16 / float16: CUDA autocast for forward passes and losses (float16 also scales the loss).")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Data-loading workers.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of everything random.")
@click.option("--out", default="results", show_default=True, type=click.Path(path_type=Path),
              help="Runs go to OUT/train/METHOD/BENCHMARK/RUN-ID/.")
@click.option("--data-root", type=click.Path(path_type=Path),
              help="Dataset root (default: $CORRBENCH_DATA, then ~/.cache/corrbench/data).")
@click.option("--resume", default=None, metavar="PATH|auto",
              help="Continue a run: a checkpoint, a run directory, or auto (this configuration's run, if any).")
@click.option("--no-validate", is_flag=True, help="Skip the per-epoch validation on the val split.")
@click.option("--val-limit", type=click.IntRange(min=1), help="Validate on the first N val pairs only.")
@click.option("--no-download", is_flag=True, help="Never download missing data.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_command(method, benchmark, settings, preset, epochs, batch_size, lr, max_steps, device, dtype, workers,
                  seed, out, data_root, resume, no_validate, val_limit, no_download, quiet) -> None:
    """Train a method on a benchmark's training split (checkpoints, log, validation, resume)."""
    from .config import parse_assignments

    outcome = train(TrainOptions(
        method=method, benchmark=benchmark, options=parse_assignments(settings), preset=preset, epochs=epochs,
        batch_size=batch_size, lr=lr, max_steps=max_steps, device=device, dtype=dtype, workers=workers, seed=seed,
        out=out, data_root=data_root, resume=resume, validate=not no_validate, val_limit=val_limit,
        progress=not quiet, download=not no_download, command=shlex.join(["corrbench", *sys.argv[1:]]),
    ))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    click.echo(f"trained {outcome.steps} steps ({outcome.epochs_done} epochs done)")
    if outcome.best is not None:
        click.echo(f"best: epoch {outcome.best['epoch']}, val PCK@0.1 {outcome.best['selection']:.2f}")
    if outcome.last_checkpoint is not None:
        click.echo(f"last checkpoint: {outcome.last_checkpoint}")
    click.echo(f"run: {outcome.directory}")
