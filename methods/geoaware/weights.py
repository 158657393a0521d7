"""Adapter checkpoints of the family: the released files, where they are expected, and reading any of them.

Released (downloaded on first use into the torch hub cache, ``<hub dir>/checkpoints/<filename>``, through
corrbench's shared downloader, from the repository's raw-file URL pinned to a commit so the bytes cannot change,
and checked against the digest recorded here):

- ``DIY_SC_DINO``: odunkel/DIY-SC ``ckpts/0300_dino_spair/best.pth`` (CC0-1.0, 2,519,767 bytes) at e1121c07, the
  DINOv2-only adapter (``AggregationNetwork(feature_dims=[768], projection_dim=768)``, the README's "Light-weight
  (DINOv2)" model); sha256 measured on the file.
- ``DIY_SC_SD``: odunkel/DIY-SC ``ckpts/0280_spair/best.pth`` (CC0-1.0) at e1121c07, the SD+DINOv2 adapter
  (``feature_dims=[640, 1280, 1280, 768]``) their README evaluates with ``pck_train.py --config
  configs/eval_spair.yaml --LOAD ckpts/0280_spair/best.pth`` (no ``--ONLY_DINO``).
- ``GEOAWARE_SC``: Junyi42/GeoAware-SC ``results_spair/best_856.PTH`` at 99fd6b6a, the SD+DINOv2 adapter their
  ``configs/eval_spair.yaml`` loads and their README's feature demo loads. Their ``configs/train_spair.yaml``
  starts from the AP-10K pre-trained ``results_ap10k/pretrained_ckpt/last.PTH``, and 85.6 (the name) is the paper's
  SPair-71k PCK@0.1 with AP-10K pre-training: this file is the "AP-10K pretrain" row, not the SPair-only one.
  The repository states no license.

The two SD+DINOv2 files are 4 MiB or larger, which this project's read-only copies of the repositories leave out,
so their sha256 could not be measured here: they are pinned by the git blob id that the commit's tree records for
the path (``git ls-tree``; the sha1 of ``blob <size>\\0`` + content), checked after download the same way
(``corrbench.backbones.weights.git_blob_id``), and their sha256 is recorded in the result as for every file.

Not released (the method exists to evaluate your own checkpoints; ``checkpoint=none`` says where the authors'
file was expected): GeoAware-SC's DINOv2-only adapter (Junyi42/GeoAware-SC ships only SD+DINOv2 files:
``results_spair/best_856.PTH``, ``results_ap10k/pretrained_ckpt/last.PTH``) and Jamais Vu's (VICO-UoE/JamaisVu's
README points at ``results_spair/``, which at d236e732 holds only GeoAware-SC's ``best_856.PTH``).

File layout: the authors save ``aggre_net.state_dict()`` bare (``torch.save``); a ``{"model": state}`` wrapper (a
training checkpoint) is read too. Files are read with ``weights_only=True``: no pickled code runs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from corrbench.backbones.weights import (RANDOM, git_blob_id, hub_checkpoint_path, read_checkpoint_file,
                                        resolve_weights)
from corrbench.errors import ConfigError, DataError


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """An adapter file the authors publish: where it is downloaded from and what its bytes hash to (its sha256,
    or, where the bytes could not be read here, the git blob id its commit records)."""

    url: str
    filename: str  # its name in the torch hub cache (the released name, best.pth, would collide)
    sha256: str | None
    origin: str  # repository, commit and path, for messages and the README
    git_blob: str | None = None

    def __post_init__(self) -> None:
        if not (self.sha256 or self.git_blob):
            raise ValueError(f"{self.origin}: a released checkpoint needs its sha256 or its git blob id")


@dataclass(frozen=True)
class UnreleasedCheckpoint:
    """An adapter the authors do not publish: where their file was expected."""

    expected: str


DIY_SC_DINO = ReleasedCheckpoint(
    url="https://raw.githubusercontent.com/odunkel/DIY-SC/e1121c072b022adcccaf1b938dcc053fb9eed930/"
        "ckpts/0300_dino_spair/best.pth",
    filename="diy_sc_0300_dino_spair_best.pth",
    sha256="42e9c8a4d27041af7bb8dc5240ea3e83d47e013b72541dc8c5829368f247e705",
    origin="odunkel/DIY-SC@e1121c07 ckpts/0300_dino_spair/best.pth",
)
GEOAWARE_SC_DINO = UnreleasedCheckpoint(
    "Junyi42/GeoAware-SC releases only SD+DINOv2 adapters (results_spair/best_856.PTH, "
    "results_ap10k/pretrained_ckpt/last.PTH), no DINOv2-only one")
DIY_SC_SD = ReleasedCheckpoint(
    url="https://raw.githubusercontent.com/odunkel/DIY-SC/e1121c072b022adcccaf1b938dcc053fb9eed930/"
        "ckpts/0280_spair/best.pth",
    filename="diy_sc_0280_spair_best.pth",
    sha256=None,
    git_blob="0ee664f62b7bfe9c6080ba6d24e9a98d34fcee85",
    origin="odunkel/DIY-SC@e1121c07 ckpts/0280_spair/best.pth",
)
GEOAWARE_SC = ReleasedCheckpoint(
    url="https://raw.githubusercontent.com/Junyi42/GeoAware-SC/99fd6b6a37d22aa2fabe75e7f48a3eaba51cfb72/"
        "results_spair/best_856.PTH",
    filename="geoaware_sc_best_856.pth",
    sha256=None,
    git_blob="1f97f5dcc9b4f6399ba1f0a539fed53a65e70aa4",
    origin="Junyi42/GeoAware-SC@99fd6b6a results_spair/best_856.PTH",
)
JAMAIS_VU = UnreleasedCheckpoint(
    "VICO-UoE/JamaisVu's README says its weights are in results_spair/, which (at d236e732) holds only "
    "GeoAware-SC's best_856.PTH")


#: Jamais Vu's category prototypes in a checkpoint ``corrbench train`` wrote (``training.py``; their ``best_cp.pth``).
PROTOTYPE_KEY = "category_prototype"


def adapter_state(content: Mapping[str, Any], origin: str) -> dict[str, torch.Tensor]:
    """The adapter tensors of a bare state dict or of ``{"model": state, ...}``. A checkpoint ``corrbench train``
    wrote holds the bare state dict beside the engine's resume keys and the prototypes, which are left out here
    (the authors' ``load_pretrained_weights`` skips them the same way: it takes only the model's own keys)."""
    from corrbench.train.checkpoints import LR_SCHEDULER_KEY, RESUME_KEYS, SCALER_KEY

    state = content["model"] if isinstance(content.get("model"), Mapping) else content
    state = {k: v for k, v in state.items() if k not in (*RESUME_KEYS, SCALER_KEY, PROTOTYPE_KEY, LR_SCHEDULER_KEY)}
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ConfigError(f"{origin} is not an adapter state dict: {', '.join(not_tensors[:5])} is not a tensor",
                          hint="an adapter checkpoint is torch.save(aggre_net.state_dict()) or {'model': state}")
    return dict(state)


def check_adapter_checkpoint(checkpoint: str | os.PathLike | Mapping[str, Any] | None,
                             release: ReleasedCheckpoint | UnreleasedCheckpoint, method: str) -> None:
    """Fail now, with the fix, if ``checkpoint`` cannot be resolved: no release to fall back on, or no such file.
    Reads and downloads nothing."""
    if checkpoint is None and isinstance(release, UnreleasedCheckpoint):
        raise ConfigError(
            f"{method} has no released checkpoint: {release.expected}",
            hint="pass your own adapter checkpoint (checkpoint=PATH, e.g. the best.pth of `corrbench train` or of "
            "the authors' pck_train.py), or checkpoint=random for an untrained adapter")
    if isinstance(checkpoint, (str, os.PathLike)) and str(checkpoint) != RANDOM:
        if not Path(checkpoint).expanduser().is_file():
            raise ConfigError(f"adapter checkpoint not found: {checkpoint}",
                              hint="pass an existing file, 'random', or nothing for the method's released file")


def resolve_adapter_checkpoint(
    checkpoint: str | os.PathLike | Mapping[str, Any] | None,
    release: ReleasedCheckpoint | UnreleasedCheckpoint,
    method: str,
    *,
    progress: bool = True,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """``(state or None for "random", provenance)`` of ``checkpoint``: None (the method's release), a path, a
    state dict in memory, or "random" (never touches the disk or the network)."""
    check_adapter_checkpoint(checkpoint, release, method)
    url, filename, sha256 = ((release.url, release.filename, release.sha256)
                             if isinstance(release, ReleasedCheckpoint) else ("", "", None))
    try:
        resolved, info = resolve_weights(url, filename, checkpoint, progress=progress, sha256=sha256)
    except DataError as exc:
        if checkpoint is not None:
            raise
        cached = hub_checkpoint_path(filename)
        raise DataError(exc.message, hint=(
            f"download {url} on a machine with internet access and place it at {cached} (or set TORCH_HOME to a "
            "folder whose hub/checkpoints/ holds it), or pass the file: checkpoint=PATH")) from exc
    if resolved is None:
        return None, info
    if checkpoint is None and isinstance(release, ReleasedCheckpoint) and release.git_blob:
        if git_blob_id(resolved) != release.git_blob:
            raise DataError(f"{resolved} is not {release.origin} (git blob {release.git_blob})",
                            hint=f"delete it and run again to download {release.url}")
    if isinstance(resolved, Path):
        content = read_checkpoint_file(resolved, what="adapter checkpoint",
                                       layout="an adapter checkpoint is torch.save(aggre_net.state_dict())")
        origin = str(resolved)
    else:
        content, origin = resolved, "the given state dict"
    return adapter_state(content, origin), {**info, "origin": origin}
