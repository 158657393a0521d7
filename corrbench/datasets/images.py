"""Reading images and masks into the tensors a Matcher sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..geometry import Size


def _open(path: Path, mode: str | None) -> np.ndarray:
    """Pixels of ``path``; ``mode=None`` keeps label images' values (palette indices, not colours)."""
    try:
        with Image.open(path) as image:
            if mode is None:
                return np.asarray(image if image.mode in ("P", "L", "I", "I;16") else image.convert("L"))
            return np.asarray(image.convert(mode))
    except FileNotFoundError:
        raise DataError(f"image not found: {path}", hint="check the dataset is complete under the data root") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path}: {exc}", hint="the file is corrupt; re-download the dataset") from None


def load_image(path: Path, expected_size: Size | None = None) -> torch.Tensor:
    """``(3, H, W)`` float32 RGB in [0, 1]; checks the size the annotation gave, if any."""
    pixels = _open(path, "RGB")
    height, width = pixels.shape[:2]
    if expected_size is not None and (width, height) != tuple(expected_size):
        raise DataError(
            f"image {path} is {width}x{height} but its annotation says {expected_size[0]}x{expected_size[1]}",
            hint="the image or its annotation file is from another release; re-download the dataset",
        )
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div_(255.0)


def load_mask(path: Path, expected_size: Size | None = None, label: int | None = None) -> torch.Tensor:
    """``(H, W)`` bool object mask from a label image.

    With ``label`` (SPair's class value of the pair's category) only that class is object, so other objects
    in the picture stay out; without it every non-zero value except 255 (VOC's "void" border) is object.
    """
    labels = _open(path, None)
    if expected_size is not None and (labels.shape[1], labels.shape[0]) != tuple(expected_size):
        raise DataError(f"mask {path} is {labels.shape[1]}x{labels.shape[0]}, expected {expected_size}")
    mask = labels == label if label is not None else (labels > 0) & (labels != 255)
    return torch.from_numpy(np.ascontiguousarray(mask))
