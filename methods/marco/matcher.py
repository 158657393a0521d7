"""``marco``: MARCO (Navigating the Unseen Space of Semantic Correspondence, CVPR 2026) as a FeatureMatcher.

What it does, as the released code (visinf/MARCO) does it:

- Preprocessing, two paths of the authors' code, both with ImageNet mean / std:
  ``resize="stretch"`` (``datasets/dataset.py`` with ``use_original_imsize=False``: SPair-71k, SPair-U, and
  ``datasets/mp100.py``): the image is stretched to ``resolution x resolution`` and points are scaled per axis,
  ``x' = x * S / W`` (corrbench's coordinate rule ``scale``).
  ``resize="longest_side_pad"`` (``dataset.py`` with ``use_original_imsize=True``: PF-PASCAL, AP-10K; and the
  torch.hub helper ``util/visualization.preprocess_data``): the longest side goes to ``resolution`` (the other
  to ``int(round(side * S / longest))``), points are scaled per axis by ``new_side / side``, and the
  normalised image is padded with zeros at the BOTTOM and RIGHT to a square (not centred, unlike
  GeoAware-SC's padding, and with zeros after normalisation, i.e. the mean colour).
  Both resize with PIL's bilinear filter on 8-bit images (``interpolation="pil"``, bit-exact for corrbench's
  8-bit images); ``interpolation="torch"`` resizes on the device instead (within 1/255 of PIL).
- Source points are clamped to ``[1e-4, side - 1 - 1e-4]`` of the resized image (before padding), as the
  authors' datasets do (``regularise_coordinates(eps=1e-4)`` after scaling the points). Their torch.hub helper
  (``util/visualization.preprocess_data``) does not clamp: it rejects points outside ``[0, W) x [0, H)`` of the
  original image and scales the rest as they are. The two therefore differ for resized coordinates below 1e-4,
  e.g. (0, 0), which the clamp moves up by at most 1e-4 px, and above ``side - 1 - 1e-4`` (``side``: the resized
  width or height), i.e. original coordinates above ``W - (1 + 1e-4) * W / side``, about the last resized pixel,
  which it moves down by less than 1 + 1e-4 resized px; points in between are identical. corrbench clamps any
  point, also ones the helper would reject. ``tests/test_marco_parity.py`` checks both rules against the authors'
  code; on its tiny random test model the clamp moved predictions by at most 0.036 px of a 56 px canvas.
- Features: the upsampled maps of ``MARCOModel`` (220 x 220 cells at 770 px).
- Matching (``models/marco.py``, ``util/geometry.py``): a source descriptor is sampled bilinearly at
  ``x_feat = x * w / S`` with ``grid_sample(align_corners=True, padding_mode="border")`` (cell rule ``marco``),
  compared with every target cell by a raw dot product (no L2 normalisation), and localised by the
  Gaussian-suppressed soft-argmax: the map is multiplied by ``exp(-d^2 / (2 * 7^2))`` around its argmax (d in
  cells), then ``softmax(scores / 10)`` weights the cell coordinates (``softmax_temp: 10`` used as
  ``exp(x / 10)``); the cell is mapped back with the align-corner rule ``x = c * (S - 1) / (w - 1)``.
- Predictions are returned in ORIGINAL target pixels (the inverse of the resize), as corrbench requires.

Options (``--set key=value``): ``weights`` (DINOv2 backbone: None = official ``dinov2_vitl14_reg4_pretrain.pth``,
a path, or ``random``); ``checkpoint`` (adapters + head: None = the released ``marco_release.pth``, a path, or
``random`` = zero adapters and a random head, offline); ``resolution`` (770, the released configs'
``inference_res``; the README evaluates at 840: ``--set resolution=840``); ``resize``; ``sigma`` (7 cells);
``temperature`` (10); ``interpolation``; the architecture (``backbone``, ``adapter_blocks``,
``bottleneck_factor``, ``upsampling_stages``: the release is vitl14_reg, 15,24, 0.5, 2); ``seed``.

Where the paper and the released code differ, the code is followed (METHODS.md lists them): adapters in blocks
15-23 (paper: last 12), ReLU and a 0.1 scale in the adapter (paper: GELU, no scale), temperature 10 used as a
divisor of raw dot products, evaluation at 770 px (README: 840).

Measuring frame: MARCO computes PCK in its stretched square (SPair-71k, SPair-U, MP-100: ground truth scaled
per axis to ``S x S`` and clamped, thresholds from the per-axis-scaled box). corrbench's default ``original``
frame differs from it by the anisotropy of the stretch; benchmark specs with ``frame="square:770"`` reproduce
the paper's protocol exactly. For PF-PASCAL and AP-10K (longest side + pad, a uniform scale) the original
frame equals MARCO's up to the rounding of the short side.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.config import option
from corrbench.errors import ConfigError
from corrbench.geometry import (ResizePolicy, ResizeTransform, Size, cells_to_pixels, pixels_to_cells, resize_8bit_pil,
                                resize_image)
from corrbench.matcher import FeatureMatcher
from corrbench.similarity import GaussianSoftArgmax, Localizer, sample_descriptors, similarity_maps
from corrbench.types import FeatureMap

from .checkpoint import build_marco_model
from .losses import MARCO_TEMPERATURE  # softmax_temp: one value for inference and the losses
from .model import MARCOArchitecture, MARCOModel

PATCH = 14
RESIZE_MODES = ("stretch", "longest_side_pad")
INTERPOLATIONS = ("pil", "torch")
#: The datasets' ``regularise_coordinates(..., eps=1e-4)`` on the resized keypoints.
SOURCE_CLAMP_EPS = 1e-4
CELL_RULE = "marco"


def canvas_transform(image_size: Size, resize: str, resolution: int) -> ResizeTransform:
    """Original image -> the ``resolution x resolution`` canvas MARCO's network sees (coordinate rule ``scale``).

    ``stretch``: both axes to ``resolution``. ``longest_side_pad``: the longest side to ``resolution``, the image
    at the top-left corner of the canvas (padding at the bottom and right).
    """
    if resize == "stretch":
        return ResizePolicy("stretch", resolution, rule="scale").transform(image_size)
    if resize == "longest_side_pad":
        content = ResizePolicy("longest_side", resolution, rule="scale").transform(image_size)
        return dataclasses.replace(content, out_size=(resolution, resolution))
    raise ConfigError(f"unknown MARCO resize {resize!r}", hint=f"use one of {', '.join(RESIZE_MODES)}")


def resize_8bit_bilinear(image: torch.Tensor, size: Size) -> torch.Tensor:
    """PIL's bilinear resize of a ``(3, H, W)`` image in [0, 1] held at 8 bits, as torchvision's ``Resize`` on a
    PIL image does; the result is back on the image's device as float32 in [0, 1]."""
    return resize_8bit_pil(image, size, "bilinear")


def clamp_to_content(points: torch.Tensor, transform: ResizeTransform, eps: float = SOURCE_CLAMP_EPS) -> torch.Tensor:
    """Clamp canvas points into ``[eps, side - 1 - eps]`` of the resized image (before padding)."""
    (ox, oy), (w, h) = transform.offset, transform.resized_size
    x = points[..., 0].clamp(ox + eps, ox + w - 1 - eps)
    y = points[..., 1].clamp(oy + eps, oy + h - 1 - eps)
    return torch.stack((x, y), dim=-1)


def similarity_at_points(source: torch.Tensor, target: torch.Tensor, points: torch.Tensor, canvas: Size) -> torch.Tensor:
    """MARCO's similarity rule: ``(B, N, h, w)`` raw dot products of the ``(B, C, h, w)`` source maps' descriptors
    at ``(B, N, 2)`` canvas pixels with the ``(B, C, h, w)`` target maps; ``canvas`` is the source's ``(W, H)``.

    The released ``MARCO.sample_descriptors_w_sim``, used alike for matching, the supervised loss and the flow
    loss: cells ``x * w / W`` (rule ``"marco"``), bilinear, ``align_corners=True``, border padding, no
    normalisation. Cells are computed in the points' dtype (callers choose it).
    """
    grid: Size = (int(source.shape[-1]), int(source.shape[-2]))
    cells = pixels_to_cells(points, canvas, grid, CELL_RULE)
    descriptors = sample_descriptors(source, cells, CELL_RULE, padding_mode="border")
    return similarity_maps(descriptors, target, normalize=False)


def predict_canvas_points(
    src_features: torch.Tensor,
    trg_features: torch.Tensor,
    src_points: torch.Tensor,
    src_canvas: Size,
    trg_canvas: Size,
    localizer: Localizer | None = None,
) -> torch.Tensor:
    """MARCO's released matching rule on canvas pixels: ``(C, h, w)`` maps, ``(N, 2)`` source points -> ``(N, 2)``.

    Equivalent to the authors' ``MARCO.sample_descriptors_w_sim`` + ``predict_from_logits`` for one pair.
    ``localizer`` defaults to the released Gaussian-suppressed soft-argmax (``GaussianSoftArgmax()``: sigma 7
    cells, temperature 10); ``MARCOMatcher`` passes the one its options build.
    """
    trg_grid: Size = (int(trg_features.shape[-1]), int(trg_features.shape[-2]))
    scores = similarity_at_points(src_features[None], trg_features[None], src_points[None], src_canvas)
    localize = GaussianSoftArgmax() if localizer is None else localizer
    target_cells = localize(scores)[0]
    return cells_to_pixels(target_cells, trg_canvas, trg_grid, CELL_RULE)


class MARCOMatcher(FeatureMatcher):
    """MARCO's upsampled features with its released matching rule (see the module docstring)."""

    description = "MARCO: DINOv2 ViT-L/14-reg + adapters + 4x upsampling head (released checkpoint), 770 px"
    matching_options = ("sigma", "temperature")
    #: How `corrbench train` trains this method (a lazy target: training code loads only when training).
    trainer = "corrbench.methods.marco.training:MARCOTrainer"

    @dataclasses.dataclass
    class Config:
        weights: str | None = option(None, "DINOv2 backbone: none = the official file, a path, or random")
        checkpoint: str | None = option(None, "adapters + head: none = the released marco_release.pth, a path, "
                                        "or random (zero adapters, random head; offline)")
        resolution: int = option(770, "canvas side in pixels (770: the released configs; the README "
                                 "evaluates at 840)", ge=PATCH, multiple_of=PATCH)
        resize: str = option("stretch", "stretch (SPair-71k, SPair-U, MP-100) or longest_side_pad (PF-PASCAL, "
                             "AP-10K; padding at the bottom and right)", choices=RESIZE_MODES)
        sigma: float = option(7.0, "Gaussian suppression width of the soft-argmax, in cells", gt=0)
        temperature: float = option(MARCO_TEMPERATURE, "soft-argmax temperature on raw dot products", gt=0)
        interpolation: str = option("pil", "pil: PIL bilinear on 8-bit images, as released; torch: on the "
                                    "device (within 1/255)", choices=INTERPOLATIONS)
        backbone: str = option("vitl14_reg", "DINOv2 variant of the network (the release: vitl14_reg)")
        adapter_blocks: tuple[int, ...] = option((15, 24), "adapters in blocks start..stop-1, as start,stop")
        bottleneck_factor: float = option(0.5, "adapter width as a fraction of the embedding width", gt=0)
        upsampling_stages: int = option(2, "number of 2x upsampling stages of the head", ge=0)
        seed: int = option(0, "initialisation of checkpoint=random (and of weights=random)")

        def __post_init__(self) -> None:
            self.architecture()  # validates backbone and adapter blocks against each other

        def architecture(self) -> MARCOArchitecture:
            return MARCOArchitecture(self.backbone, tuple(self.adapter_blocks), self.bottleneck_factor,
                                     self.upsampling_stages)

    def __init__(self, model: MARCOModel | None = None, **options: Any):
        """``MARCOMatcher(**options)`` builds the network from the options; ``MARCOMatcher(model, **options)``
        wraps a network you already have (e.g. one being trained), taking its architecture."""
        if model is not None:
            arch = model.architecture
            for key, value in (("backbone", arch.backbone), ("adapter_blocks", arch.adapter_blocks),
                               ("bottleneck_factor", arch.bottleneck_factor),
                               ("upsampling_stages", arch.upsampling_stages)):
                options.setdefault(key, value)
        super().__init__(**options)
        cfg = self.config
        if model is None:
            model = build_marco_model(cfg.weights, cfg.checkpoint, architecture=cfg.architecture(), seed=cfg.seed)
        elif model.architecture != cfg.architecture():
            raise ConfigError(f"the model given is {model.architecture}, but the options say {cfg.architecture()}")
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def build_localizer(self) -> Localizer:
        """The released Gaussian-suppressed soft-argmax with the options' sigma and temperature (``match_maps``)."""
        return GaussianSoftArgmax(self.config.sigma, self.config.temperature)

    @property
    def normalize_features(self) -> bool:
        return False  # raw dot products, as released

    def weights_info(self) -> dict[str, Any]:
        return self.model.weights_info()

    def parameter_counts(self) -> dict[str, int]:
        return self.model.parameter_counts()

    # -- features --------------------------------------------------------------------------------------------
    def canvas(self, image: torch.Tensor) -> tuple[torch.Tensor, ResizeTransform]:
        """A ``(3, H, W)`` image in [0, 1] -> the normalised, zero-padded ``(3, S, S)`` network input and its
        transform."""
        cfg = self.config
        transform = canvas_transform((int(image.shape[-1]), int(image.shape[-2])), cfg.resize, cfg.resolution)
        if cfg.interpolation == "pil":
            content = resize_8bit_bilinear(image, transform.resized_size)
        else:
            content = resize_image(image.float(), transform.resized_size, "bilinear")
        content = (content - self.mean) / self.std
        canvas = content.new_zeros((3, cfg.resolution, cfg.resolution))
        (ox, oy), (w, h) = transform.offset, transform.resized_size
        canvas[:, oy : oy + h, ox : ox + w] = content
        return canvas, transform

    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        canvases, transforms = zip(*(self.canvas(image) for image in images))
        dtype = next(self.model.parameters()).dtype
        features = self.model(torch.stack(canvases).to(dtype))
        return [FeatureMap(f, t, cell_rule=CELL_RULE) for f, t in zip(features, transforms)]

    # -- matching --------------------------------------------------------------------------------------------
    def match_maps(self, src: FeatureMap, trg: FeatureMap, src_points: torch.Tensor) -> torch.Tensor:
        # Coordinates and the soft-argmax in float32 at least, whatever precision the features were made in.
        dtype = torch.promote_types(src.features.dtype, torch.float32)
        canvas = clamp_to_content(src.transform.forward(src_points.to(dtype)), src.transform)
        target = predict_canvas_points(
            src.features.to(dtype), trg.features.to(dtype), canvas, src.transform.out_size, trg.transform.out_size,
            self.localizer,
        )
        return trg.transform.inverse(target).to(src_points.dtype)

    def transfer_points(self, src_image: torch.Tensor, trg_image: torch.Tensor, src_points: Any) -> torch.Tensor:
        """Where ``(N, 2)`` points (original source pixels) land in the target (original target pixels).

        Images are ``(3, H, W)`` RGB in [0, 1] at their original size.
        """
        device = self.mean.device
        points = torch.as_tensor(np.asarray(src_points, dtype=np.float32).reshape(-1, 2), device=device)
        with torch.inference_mode():
            src, trg = self.extract([src_image.to(device), trg_image.to(device)])
            return self.match_maps(src, trg, points)
