"""Checkpoint files, finding the one to resume from, generator states, and what names a run.

A checkpoint is the method's release layout (for MARCO ``{"model": adapters + head, "ema": EMA teacher}``,
which the authors' code loads as is) plus the engine's resume keys (``RESUME_KEYS``): ``optimizer``,
``trainer`` (the method's other state, e.g. MARCO's mining generator), ``step``, ``epoch``,
``batch_in_epoch``, ``rng`` (every process's python, numpy, torch and CUDA generator states), ``config`` (the
identity and the resolved recipe) and ``history``; ``grad_scaler`` too in ``--dtype float16`` runs, and
``lr_scheduler`` in runs whose trainer schedules the learning rate. Everything is tensors and plain values, so checkpoints load with ``torch.load(weights_only=True)``. ``epoch`` is the
index of the last completed epoch (the authors' convention: their ``resume_from_checkpoint`` starts at
``epoch + 1``) and ``batch_in_epoch`` the batches already done of the next one.

A run's identity (``run_identity``) is everything that decides the trained weights except the training length;
its JSON hash names the run directory, so ``--resume auto`` finds it again and ``--epochs`` can grow.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import ConfigError
from ..files import json_identity_hash, replacing
from ..results import safe_name
from .api import TrainingError, TrainingRecipe

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pth"
BEST = "best.pth"
#: Keys the engine adds to a checkpoint next to the method's release layout.
RESUME_KEYS = ("optimizer", "trainer", "step", "epoch", "batch_in_epoch", "rng", "config", "history")
#: The fp16 loss scaler's state, in checkpoints of ``--dtype float16`` runs only.
SCALER_KEY = "grad_scaler"
#: The learning-rate scheduler's state, in checkpoints of runs whose trainer has one (``lr_scheduler``).
LR_SCHEDULER_KEY = "lr_scheduler"


# ----------------------------------------------------------------------------------------------------------
# What names a run


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


def run_directory(out: Path, method: str, benchmark: str, identity: Mapping[str, Any]) -> Path:
    """``<out>/train/<method>/<benchmark>/<the identity's hash, 12 hex digits>``."""
    return Path(out) / "train" / safe_name(method) / safe_name(benchmark) / json_identity_hash(identity)[:12]


# ----------------------------------------------------------------------------------------------------------
# Files


def cpu_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU copies of a state dict's tensors: what a trainer's ``release_state`` /
    ``extra_state`` returns (a copy, so later steps cannot change a checkpoint being written)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def save_checkpoint(state: Mapping[str, Any], path: Path, *, best: bool) -> None:
    """Write ``state`` to ``path`` atomically; ``last.pth`` (and ``best.pth`` when ``best``) then point to it."""
    with replacing(path) as tmp:
        torch.save(dict(state), tmp)
    _link(path, path.with_name(LAST))
    if best:
        _link(path, path.with_name(BEST))


def _link(target: Path, alias: Path) -> None:
    """``alias`` becomes a hard link to ``target`` (a copy where links are impossible), replaced atomically."""
    with replacing(alias) as tmp:
        try:
            os.link(target, tmp)
        except OSError:
            shutil.copyfile(target, tmp)


def load_checkpoint_file(path: Path) -> dict[str, Any]:
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


def find_resume_file(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` names: a file, a run directory's last one, or (``auto``) this run's, if any."""
    if resume == "auto":
        last = run_dir / CHECKPOINT_DIR / LAST
        return last if last.is_file() else None
    path = Path(resume).expanduser()
    if path.is_dir():
        for candidate in (path / CHECKPOINT_DIR / LAST, path / LAST):
            if candidate.is_file():
                return candidate
        raise TrainingError(f"{path} holds no checkpoints/last.pth", hint="pass a checkpoint file or a run directory")
    return path


def run_directory_of(checkpoint_file: Path) -> Path:
    """The run directory a checkpoint file belongs to (its ``checkpoints/`` folder's parent)."""
    folder = checkpoint_file.parent
    return folder.parent if folder.name == CHECKPOINT_DIR else folder


def check_same_run(checkpoint: Mapping[str, Any], path: Path, identity: Mapping[str, Any], world_size: int) -> None:
    """A resumed run must have the checkpoint's configuration and number of processes."""
    stored = checkpoint["config"]["identity"]
    if json_identity_hash(stored) != json_identity_hash(identity):
        changes = "; ".join(_differences(stored, identity)[:8])
        raise ConfigError(f"{path} was trained with another configuration ({changes})",
                          hint="resume with the options of that run, or start a new run without --resume")
    if len(checkpoint["rng"]) != world_size:
        raise ConfigError(f"{path} was written by {len(checkpoint['rng'])} processes; this run has {world_size}",
                          hint="resume with the same number of processes (bit-identical continuation needs it)")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


# ----------------------------------------------------------------------------------------------------------
# Generator states


def rng_state() -> dict[str, Any]:
    """This process's generator states as tensors and plain values, so checkpoints load with ``weights_only``."""
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
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
