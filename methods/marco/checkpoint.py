"""MARCO checkpoints: the released file, strict loading, saving in the same layout, and ``build_marco_model``
(backbone weights + checkpoint -> a ready network).

Layout (the authors' ``train.py`` and ``hubconf.py``): ``{"model": {name: tensor}}`` where ``model`` holds only
the adapter and head parameters (``dino.blocks.<i>.adapter.*``, ``upscale.<j>.*``); the frozen backbone
always comes from the DINOv2 release. The authors' training checkpoints add ``optimizer``, ``epoch`` and
``args`` (a pickled config object); their teacher goes to a separate ``teacher<epoch>.pth`` with the same
``model`` layout.

Ours are written as ``{"model": trainable state}`` plus, only when given, ``optimizer``, ``ema`` (the EMA
teacher's trainable state, in the ``model`` layout), ``step``, ``epoch`` and ``config`` (a plain dict), so

- the authors' code loads ours: ``hubconf._load_checkpoint`` and ``evaluate.py`` read ``checkpoint["model"]``
  (and ``util/misc.resume_from_checkpoint`` reads ``optimizer`` when ``epoch`` is present too);
- we load theirs: the released file, their ``checkpoint<epoch>.pth`` / ``teacher<epoch>.pth``, or a bare state
  dict of exactly the adapter and head keys.

Loading is strict: missing, unexpected or wrongly shaped keys are listed in a ConfigError that names the file.
Files are read with ``torch.load(weights_only=True)``: no code from a pickle runs. Non-tensor objects of other
libraries that training checkpoints carry (the authors' ``args``) are read as inert placeholders.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from corrbench.backbones.dinov2 import load_dinov2
from corrbench.backbones.weights import RANDOM, hub_checkpoint_path, read_checkpoint_file, resolve_weights
from corrbench.errors import ConfigError, DataError
from corrbench.files import replacing

from .model import RELEASED, MARCOArchitecture, MARCOModel

RELEASE_URL = "https://github.com/visinf/MARCO/releases/download/v1.0/marco_release.pth"
#: The name torch.hub gives the released file in its cache (``hubconf.py`` downloads it the same way).
RELEASE_FILENAME = "marco_release.pth"

def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Everything a checkpoint file holds, read without executing pickled code (see the module docstring)."""
    return read_checkpoint_file(path, what="MARCO checkpoint",
                                layout='a MARCO checkpoint is {"model": {name: tensor}} or a dict of tensors')


def model_state(checkpoint: Mapping[str, Any], origin: str) -> dict[str, torch.Tensor]:
    """The adapter + head tensors of ``{"model": {...}, ...}`` or of a bare state dict."""
    state = checkpoint["model"] if "model" in checkpoint else checkpoint
    if not isinstance(state, Mapping):
        raise ConfigError(f'{origin}: "model" holds a {type(state).__name__}, not a state dict')
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ConfigError(
            f"{origin} is not a MARCO state dict: {', '.join(not_tensors[:5])} "
            f"{'are' if len(not_tensors) > 1 else 'is'} not a tensor",
            hint='a MARCO checkpoint is {"model": {name: tensor}} or a bare dict of the adapter and head tensors',
        )
    return dict(state)


def _listing(label: str, items: list[str], first: int = 5) -> str:
    more = f", ... ({len(items) - first} more)" if len(items) > first else ""
    return f"{len(items)} {label}: {', '.join(items[:first])}{more}"


@functools.lru_cache(maxsize=8)
def expected_shapes(architecture: MARCOArchitecture) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a checkpoint's ``model`` entry for ``architecture`` (built on the meta device: free)."""
    with torch.device("meta"):
        return MARCOModel(architecture).trainable_shapes()


def check_state(
    target: MARCOModel | MARCOArchitecture, state: Mapping[str, torch.Tensor], origin: str
) -> None:
    """Raise ConfigError listing missing, unexpected and mis-shaped keys of a trainable state dict for a model
    (or an architecture); ``origin`` names the file in the message."""
    architecture = target.architecture if isinstance(target, MARCOModel) else target
    own = expected_shapes(architecture)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {own[k]}"
                  for k in own if k in state and tuple(state[k].shape) != own[k]]
    if not (missing or unexpected or mismatched):
        return
    parts = [_listing(label, items) for label, items in
             (("missing", missing), ("unexpected", unexpected), ("with a wrong shape", mismatched)) if items]
    arch = architecture
    first, last = arch.adapter_blocks[0], arch.adapter_blocks[1] - 1
    hint = (f"the model is {arch.backbone} with adapters in blocks {first}..{last} (width {arch.bottleneck}) and "
            f"{arch.upsampling_stages} upsampling stages; the checkpoint must be of that architecture (the method's "
            "options backbone, adapter_blocks, bottleneck_factor, upsampling_stages)")
    if any(".adapter." not in k and not k.startswith("upscale.") for k in unexpected):
        hint += ", and hold only adapter and head parameters (the backbone comes from the DINOv2 release)"
    raise ConfigError(f"{origin} does not fit the MARCO model: " + "; ".join(parts), hint=hint)


def resolve_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    architecture: MARCOArchitecture | None = None,
    *,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Find, read and (given the architecture) check a checkpoint: ``(state or None for "random", provenance)``.

    checkpoint: None, the released ``marco_release.pth`` (torch hub cache, else downloaded there with a
    progress bar); a path; a ``{"model": ...}`` or bare state dict in memory; or "random".
    """
    if isinstance(checkpoint, (str, os.PathLike)) and str(checkpoint) != RANDOM:
        if not Path(checkpoint).expanduser().is_file():
            raise ConfigError(f"MARCO checkpoint not found: {checkpoint}",
                              hint=f"pass an existing file, 'random', or nothing for the released {RELEASE_FILENAME}")
    try:
        resolved, info = resolve_weights(RELEASE_URL, RELEASE_FILENAME, checkpoint, progress=progress)
    except DataError as exc:  # the released file is neither cached nor downloadable
        cached = hub_checkpoint_path(RELEASE_FILENAME)
        raise DataError(exc.message, hint=(
            f"download {RELEASE_URL} on a machine with internet access and place it at {cached} (or set TORCH_HOME "
            "to a folder whose hub/checkpoints/ holds it), or pass the file: --checkpoint PATH / checkpoint=PATH"
        )) from exc
    if resolved is None:
        return None, info
    if isinstance(resolved, Path):
        content, origin = read_checkpoint(resolved), str(resolved)
    else:
        content, origin = resolved, "the given state dict"
    state = model_state(content, origin)
    if architecture is not None:
        check_state(architecture, state, origin)
    return state, info


def load_checkpoint(
    model: MARCOModel,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Fill ``model``'s adapters and head, strictly; returns (and records in ``model.provenance``) the source.

    checkpoint: as ``resolve_checkpoint`` takes it; "random" keeps the model's initialisation (zero adapters,
    so the backbone is plain DINOv2, and a random head).
    """
    state, info = resolve_checkpoint(checkpoint, model.architecture, progress=progress)
    if state is not None:
        model.load_state_dict(state, strict=False)  # its complement, the backbone, was checked to be absent
    model.provenance = {**info, "backbone": model.provenance.get("backbone", {})}
    return dict(info)


def build_marco_model(
    weights: str | Path | Mapping[str, torch.Tensor] | None = None,
    checkpoint: str | Path | Mapping[str, Any] | None = None,
    *,
    architecture: MARCOArchitecture = RELEASED,
    seed: int = 0,
    progress: bool = True,
) -> MARCOModel:
    """A ready MARCO network in eval mode.

    weights: the DINOv2 backbone, as ``load_dinov2`` takes it: None (the official file of
        ``architecture.backbone``, from the torch hub cache or downloaded), a path, a state dict, or "random".
    checkpoint: adapters and head, as ``load_checkpoint`` takes it: None
        (the released ``marco_release.pth``), a path, a ``{"model": ...}`` or bare state dict, or "random"
        (the training initialisation: zero adapters, a head drawn from ``seed``; never touches the network).

    Provenance: ``model.weights_info()`` gives the checkpoint's source and sha256 and the backbone's.
    """
    # The checkpoint first: a wrong or unobtainable one fails before the (large) backbone is read.
    state, info = resolve_checkpoint(checkpoint, architecture, progress=progress)
    backbone = load_dinov2(architecture.backbone, weights=weights, progress=progress, seed=seed)
    # The trainable part's initialisation is drawn from its own seed, not from the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MARCOModel(architecture, backbone)
    if state is not None:
        model.load_state_dict(state, strict=False)  # checked above: exactly the adapters and the head
    else:
        info = {**info, "seed": seed}
    model.provenance = {**info, "backbone": backbone.weights_info()}
    return model.eval()


def _trainable(state: MARCOModel | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    tensors = state.trainable_state_dict() if isinstance(state, MARCOModel) else dict(state)
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def save_checkpoint(
    path: str | os.PathLike,
    model: MARCOModel | Mapping[str, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    ema: MARCOModel | Mapping[str, torch.Tensor] | None = None,
    step: int | None = None,
    epoch: int | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"model": adapters + head}`` (+ the resume entries given) atomically; returns the path.

    ``model`` and ``ema`` may be MARCO models (their trainable part is taken) or trainable state dicts.
    ``config`` must be plain data (numbers, strings, lists, dicts) so the file loads with weights_only.
    """
    path = Path(path)
    content: dict[str, Any] = {"model": _trainable(model)}
    if optimizer is not None:
        content["optimizer"] = optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer
    if ema is not None:
        content["ema"] = _trainable(ema)
    for key, value in (("step", step), ("epoch", epoch)):
        if value is not None:
            content[key] = int(value)
    if config is not None:
        content["config"] = dict(config)
    with replacing(path) as tmp:  # a reader never sees half a file
        torch.save(content, tmp)
    return path


__all__ = [
    "RANDOM",
    "RELEASE_FILENAME",
    "RELEASE_URL",
    "check_state",
    "expected_shapes",
    "load_checkpoint",
    "model_state",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]
