"""Point maps, depth maps and object masks for Jamais Vu's prototype objective, read from folders.

The layout is the one the authors release and read (``load_points_and_seg`` in VICO-UoE/JamaisVu's
``pck_train.py``), which is also what MoGe's ``infer.py --maps`` writes for a folder of images:

    <point-map root>/<category>/<image stem>/points.exr   (H, W, 3) camera-space points
    <point-map root>/<category>/<image stem>/depth.exr    (H, W) depth
    <mask root>/<category>/<image stem>.npy               (H, W) object mask, values in [0, 1] or bool

e.g. their ``SPair_MoGe_maps.zip`` unpacked to ``SPair-71k/MoGeMaps`` and ``SPair_owlv2_sam_masks.zip`` to
``SPair-71k/owlv2_sam_masks``. Maps from another monocular model can use the same layout, as EXR or as
``points.npy`` / ``depth.npy`` (float arrays of the same shapes). Maps are at the image's own resolution.

Channels of ``points.exr`` are taken in alphabetical name order, as the authors' ``read_exr`` does: for a
MoGe/OpenCV file that is (z, y, x), a mirror image of the camera frame. Every loss aligns point sets by
similarities fitted per image, and the learned prototype simply comes out mirrored, so this follows the code.
Points are clipped to [-1000, 1000] and depth to at most 1000 (infinite background values), as theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from corrbench.errors import DataError

from .exr import read_exr_channels

POINT_LIMIT = 1e3  # the authors clip points to [-1e3, 1e3] and depth to <= 1e3 (MoGe marks the sky as inf)


@dataclass
class TrainingGeometry:
    """One image's inputs to the prototype loss, at the image's resolution."""

    points: torch.Tensor  # (3, H, W) float32
    depth: torch.Tensor  # (1, H, W) float32
    object_mask: torch.Tensor  # (1, H, W) float32


def read_training_geometry(point_map_root: Path | str, mask_root: Path | str, category: str,
                           image_stem: str) -> TrainingGeometry:
    """The point map, depth and object mask of ``<category>/<image_stem>`` (see the module docstring)."""
    folder = Path(point_map_root) / category / image_stem
    points = _read_map(folder, "points", channels=3)
    depth = _read_map(folder, "depth", channels=1)
    mask_path = Path(mask_root) / category / f"{image_stem}.npy"
    mask = _load_npy(mask_path, "object mask")
    if mask.ndim != 2:
        raise DataError(f"{mask_path}: object mask has shape {mask.shape}, expected (H, W)")
    for name, array in (("depth", depth), ("object mask", mask)):
        if array.shape[:2] != points.shape[:2]:
            raise DataError(f"{folder}: {name} is {array.shape[0]}x{array.shape[1]} but the point map is "
                            f"{points.shape[0]}x{points.shape[1]}",
                            hint="point map, depth and mask must all be at the image's resolution")
    return TrainingGeometry(
        points=torch.from_numpy(points).clip(min=-POINT_LIMIT, max=POINT_LIMIT).permute(2, 0, 1).contiguous(),
        depth=torch.from_numpy(depth).clip(max=POINT_LIMIT).permute(2, 0, 1).contiguous(),
        object_mask=torch.from_numpy(mask.astype(np.float32)).unsqueeze(0),
    )


def _read_map(folder: Path, name: str, channels: int) -> np.ndarray:
    """``folder/name.exr`` or ``folder/name.npy`` as a float32 (H, W, channels) array."""
    exr, npy = folder / f"{name}.exr", folder / f"{name}.npy"
    if exr.is_file():
        array, path = read_exr_channels(exr)[0], exr
    elif npy.is_file():
        array, path = _load_npy(npy, f"{name} map").astype(np.float32), npy
        if array.ndim == 2:
            array = array[..., None]
    else:
        raise DataError(f"{folder}: no {name}.exr or {name}.npy",
                        hint="point maps are read as <root>/<category>/<image stem>/points.exr and depth.exr "
                             "(Jamais Vu's MoGeMaps layout)")
    if array.ndim != 3 or array.shape[-1] != channels:
        raise DataError(f"{path}: {name} map has shape {array.shape}, expected (H, W, {channels})")
    return array


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable {what} ({exc})") from exc
