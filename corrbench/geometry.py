"""The one coordinate convention of corrbench, resize policies, and the pixel <-> feature-cell mapping.

Convention: points are ``(x, y)`` pixels, integer coordinates are pixel centres, ``(0, 0)`` is the centre
of the top-left pixel; sizes are ``(width, height)``.

Three rules for carrying a coordinate from a length ``L`` to a length ``L'`` are in use in the field, and
at PCK@0.01 the difference between them matters, so each is named and a method picks one explicitly:

``half_pixel``     ``x' = (x + 0.5) * L'/L - 0.5``   exact under the pixel-centre convention (corrbench default)
``scale``          ``x' = x * L'/L``                  MARCO's keypoint scaling (dataset and feature map)
``align_corners``  ``x' = x * (L'-1)/(L-1)``          the unified benchmark's keypoint scaling

Every rule is affine per axis, so every transform here is ``x' = a * x + b`` and exactly invertible.

Feature cells: a grid of ``(w, h)`` cells covers the processed canvas. ``CELL_RULES`` maps processed-canvas
pixels to continuous cell coordinates (cell ``j`` has coordinate ``j``) and back:

``half_pixel``     cell centres sit at the centres of their patches; sampled with ``align_corners=False``
``marco``          pixel -> cell ``c = x * w/W`` (sampled with ``align_corners=True``), cell -> pixel
                   ``x = c * (W-1)/(w-1)``: MARCO's released code, which is not an exact inverse pair
``align_corners``  ``c = x * (w-1)/(W-1)`` both ways, sampled with ``align_corners=True``
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

Size = tuple[int, int]  # (width, height)
Points = Union[np.ndarray, torch.Tensor]

COORDINATE_RULES = ("half_pixel", "scale", "align_corners")
CELL_RULES = ("half_pixel", "marco", "align_corners")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _axis_affine(length: int, new_length: float, rule: str) -> tuple[float, float]:
    """``(a, b)`` with ``x' = a * x + b`` carrying a coordinate from ``length`` to ``new_length``."""
    if rule == "half_pixel":
        a = new_length / length
        return a, 0.5 * a - 0.5
    if rule == "scale":
        return new_length / length, 0.0
    if rule == "align_corners":
        return (new_length - 1) / (length - 1) if length > 1 else 1.0, 0.0
    raise ConfigError(f"unknown coordinate rule {rule!r}", hint=f"use one of {', '.join(COORDINATE_RULES)}")


def _apply_affine(points: Points, a: tuple[float, float], b: tuple[float, float]) -> Points:
    if isinstance(points, torch.Tensor):
        scale = torch.tensor(a, dtype=points.dtype, device=points.device)
        shift = torch.tensor(b, dtype=points.dtype, device=points.device)
        return points * scale + shift
    return np.asarray(points, dtype=np.float64) * np.asarray(a) + np.asarray(b)


@dataclass(frozen=True)
class ResizeTransform:
    """An exactly invertible per-axis affine map from an original image to a processed canvas."""

    in_size: Size
    out_size: Size  # the canvas (after padding)
    resized_size: Size  # the image content inside the canvas (before padding)
    offset: tuple[int, int]  # where the content starts on the canvas (padding on the left/top)
    rule: str = "half_pixel"

    @property
    def affine(self) -> tuple[tuple[float, float], tuple[float, float]]:
        ax, bx = _axis_affine(self.in_size[0], self.resized_size[0], self.rule)
        ay, by = _axis_affine(self.in_size[1], self.resized_size[1], self.rule)
        return (ax, ay), (bx + self.offset[0], by + self.offset[1])

    def forward(self, points: Points) -> Points:
        """Original-image pixels -> canvas pixels."""
        a, b = self.affine
        return _apply_affine(points, a, b)

    def inverse(self, points: Points) -> Points:
        """Canvas pixels -> original-image pixels."""
        (ax, ay), (bx, by) = self.affine
        return _apply_affine(points, (1 / ax, 1 / ay), (-bx / ax, -by / ay))


def resize_image(image: torch.Tensor, size: Size, interpolation: str = "bilinear") -> torch.Tensor:
    """Resize a ``(C, H, W)`` or ``(B, C, H, W)`` float image to ``size = (W, H)``.

    Down-sampling uses antialiasing (as PIL does) so that the result does not depend on aliasing noise.
    """
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {interpolation!r}", hint=f"use one of {', '.join(INTERPOLATIONS)}")
    batched = image.ndim == 4
    x = image if batched else image[None]
    if (x.shape[-1], x.shape[-2]) != tuple(size):
        kwargs = {} if interpolation == "nearest" else {"align_corners": False, "antialias": True}
        x = F.interpolate(x, size=(size[1], size[0]), mode=interpolation, **kwargs)
        if interpolation == "bicubic":
            x = x.clamp(0.0, 1.0)  # bicubic overshoots; images stay in [0, 1]
    return x if batched else x[0]


#: PIL filters ``resize_8bit_pil`` knows, by name.
PIL_FILTERS = ("bilinear", "lanczos")


def resize_8bit_pil(image: torch.Tensor, size: Size, resample: str = "bilinear") -> torch.Tensor:
    """PIL's resize of a ``(3, H, W)`` image in [0, 1] held at 8 bits, as reference codes that resize PIL images
    do (MARCO: bilinear through torchvision; GeoAware-SC and its descendants: ``Image.LANCZOS``); the result is
    back on the image's device as float32 in [0, 1]."""
    from PIL import Image  # only the methods that reproduce a PIL pipeline need it

    if resample not in PIL_FILTERS:
        raise ConfigError(f"unknown PIL filter {resample!r}", hint=f"use one of {', '.join(PIL_FILTERS)}")
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    pil_filter = {"bilinear": Image.BILINEAR, "lanczos": Image.LANCZOS}[resample]
    resized = np.asarray(Image.fromarray(pixels).resize(tuple(size), pil_filter))
    return torch.from_numpy(resized.copy()).to(image.device).permute(2, 0, 1).float().div_(255.0)


@dataclass(frozen=True)
class ResizePolicy:
    """How a method brings an image of any size to the canvas its network sees.

    kind:
        ``stretch``           resize to ``size x size`` (aspect ratio changes; MARCO, unified benchmark)
        ``longest_side_pad``  scale so the longest side is ``size``, then centre-pad with zeros to a square
                              (GeoAware-SC, Jamais Vu, DIY-SC)
        ``longest_side``      scale so the longest side is ``size``, no padding (canvas keeps the aspect)
        ``none``              keep the original image
    multiple: round the content size to a multiple of this (e.g. the ViT patch size) for ``longest_side``.
    """

    kind: str = "stretch"
    size: int = 224
    rule: str = "half_pixel"
    interpolation: str = "bilinear"
    multiple: int = 1

    KINDS = ("stretch", "longest_side_pad", "longest_side", "none")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ConfigError(f"unknown resize policy {self.kind!r}", hint=f"use one of {', '.join(self.KINDS)}")
        if self.kind != "none" and self.size < 1:
            raise ConfigError(f"resize size must be positive, got {self.size}")
        _axis_affine(2, 2, self.rule)  # validates the rule name
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}", hint=f"use one of {', '.join(INTERPOLATIONS)}"
            )

    @classmethod
    def parse(cls, text: str, **kwargs) -> "ResizePolicy":
        """``"stretch:840"``, ``"longest_side_pad:840"``, ``"longest_side:518"`` or ``"none"``."""
        kind, _, size = text.partition(":")
        if kind == "none":
            return cls(kind="none", size=0, **kwargs)
        try:
            return cls(kind=kind, size=int(size), **kwargs)
        except ValueError:
            raise ConfigError(
                f"malformed resize policy {text!r}", hint="write it as KIND:SIZE, e.g. stretch:840"
            ) from None

    def transform(self, image_size: Size) -> ResizeTransform:
        w, h = image_size
        if self.kind == "none":
            return ResizeTransform(image_size, image_size, image_size, (0, 0), self.rule)
        if self.kind == "stretch":
            canvas = (self.size, self.size)
            return ResizeTransform(image_size, canvas, canvas, (0, 0), self.rule)
        scale = self.size / max(w, h)
        content = (max(1, round(w * scale)), max(1, round(h * scale)))
        if self.kind == "longest_side":
            m = self.multiple
            content = (max(m, round(content[0] / m) * m), max(m, round(content[1] / m) * m))
            return ResizeTransform(image_size, content, content, (0, 0), self.rule)
        canvas = (self.size, self.size)
        offset = ((self.size - content[0]) // 2, (self.size - content[1]) // 2)
        return ResizeTransform(image_size, canvas, content, offset, self.rule)

    def apply(self, image: torch.Tensor) -> tuple[torch.Tensor, ResizeTransform]:
        """Resize (and pad) a ``(3, H, W)`` image; returns the canvas and the transform used."""
        t = self.transform((int(image.shape[-1]), int(image.shape[-2])))
        content = resize_image(image, t.resized_size, self.interpolation)
        if t.out_size == t.resized_size:
            return content, t
        canvas = image.new_zeros((*image.shape[:-2], t.out_size[1], t.out_size[0]))
        ox, oy = t.offset
        canvas[..., oy : oy + t.resized_size[1], ox : ox + t.resized_size[0]] = content
        return canvas, t


@dataclass(frozen=True)
class UniformScaleTransform(ResizeTransform):
    """GeoAware-SC's keypoint rule (``preprocess_kps_pad``): BOTH axes scaled by ``canvas / longest side`` plus the
    padding offset. The content's short side is rounded to whole pixels, the keypoints' scale is not, so this
    differs from a per-axis ``scale`` transform by up to half a canvas pixel along the short side."""

    @property
    def affine(self) -> tuple[tuple[float, float], tuple[float, float]]:
        scale = self.out_size[0] / max(self.in_size)
        return (scale, scale), (float(self.offset[0]), float(self.offset[1]))


def centred_pad_transform(image_size: Size, resolution: int) -> ResizeTransform:
    """Original image -> GeoAware-SC's canvas (``utils_correspondence.resize``): longest side to ``resolution``
    (short side rounded), content centred on the square (offset ``(S - short) // 2``), keypoints by the uniform
    scale (``UniformScaleTransform``). The one home of that canvas: the family's inference and the training
    engine's ``pad-centre`` rule both place images with it."""
    placed = ResizePolicy("longest_side_pad", resolution, rule="scale").transform(image_size)
    return UniformScaleTransform(**{f.name: getattr(placed, f.name) for f in fields(placed)})


def paste_on_canvas(content: Points, transform: ResizeTransform) -> Points:
    """``(..., H', W')`` content (tensor or array) -> the ``(..., out H, out W)`` canvas, zeros around it, the
    content at ``transform``'s offset (centred for ``centred_pad_transform``, top left for an offset of 0)."""
    (ox, oy), (w, h), (cw, ch) = transform.offset, transform.resized_size, transform.out_size
    if isinstance(content, torch.Tensor):
        canvas = content.new_zeros((*content.shape[:-2], ch, cw))
    else:
        canvas = np.zeros((*content.shape[:-2], ch, cw), dtype=content.dtype)
    canvas[..., oy : oy + h, ox : ox + w] = content
    return canvas


# ---------------------------------------------------------------------------------------------------------
# Pixels of the processed canvas <-> continuous feature-cell coordinates.


def _check_cell_rule(rule: str) -> None:
    if rule not in CELL_RULES:
        raise ConfigError(f"unknown cell rule {rule!r}", hint=f"use one of {', '.join(CELL_RULES)}")


def pixels_to_cells(points: torch.Tensor, canvas_size: Size, grid_size: Size, rule: str = "half_pixel") -> torch.Tensor:
    """Canvas pixel coordinates ``(..., 2)`` -> continuous cell coordinates (cell j is at j)."""
    _check_cell_rule(rule)
    out = []
    for axis in (0, 1):
        x, length, cells = points[..., axis], canvas_size[axis], grid_size[axis]
        if rule == "half_pixel":
            out.append((x + 0.5) * cells / length - 0.5)
        elif rule == "marco":
            out.append(x * cells / length)
        else:
            out.append(x * (cells - 1) / max(length - 1, 1))
    return torch.stack(out, dim=-1)


def cells_to_pixels(cells: torch.Tensor, canvas_size: Size, grid_size: Size, rule: str = "half_pixel") -> torch.Tensor:
    """Continuous cell coordinates ``(..., 2)`` -> canvas pixel coordinates."""
    _check_cell_rule(rule)
    out = []
    for axis in (0, 1):
        c, length, n = cells[..., axis], canvas_size[axis], grid_size[axis]
        if rule == "half_pixel":
            out.append((c + 0.5) * length / n - 0.5)
        else:  # marco and align_corners both map back with the align-corner rule
            out.append(c * (length - 1) / max(n - 1, 1))
    return torch.stack(out, dim=-1)


def cells_to_sampling_grid(cells: torch.Tensor, grid_size: Size, rule: str = "half_pixel") -> tuple[torch.Tensor, bool]:
    """Continuous cell coordinates -> ``grid_sample`` coordinates in [-1, 1] and its ``align_corners`` flag."""
    _check_cell_rule(rule)
    size = torch.tensor(grid_size, dtype=cells.dtype, device=cells.device)
    if rule == "half_pixel":
        return (2 * cells + 1) / size - 1, False
    return 2 * cells / (size - 1).clamp(min=1) - 1, True


def cell_centres(grid_size: Size, device: torch.device | str | None = None, dtype=torch.float32) -> torch.Tensor:
    """``(h, w, 2)`` tensor of the ``(x, y)`` cell coordinates of every cell."""
    w, h = grid_size
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack((xs, ys), dim=-1)


def bbox_from_points(points: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` of the box spanned by ``(N, 2)`` points (PF-WILLOW's ``bbox-kp`` threshold)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return np.full(4, math.nan)
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
