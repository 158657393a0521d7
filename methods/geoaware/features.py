"""The family's input features: frozen DINOv2 ViT-B/14 at GeoAware-SC's resolution and resize, and the hook for
other feature sources (Stable Diffusion).

What the authors' extractor does (GeoAware-SC ``preprocess_map.py`` with ``model_utils/extractor_dino.py``; DIY-SC
``preprocess_map.py``, defaults ``--dino_size 840 --layer 11 --facet token --dino_model dinov2_vitb14``) and how
corrbench reproduces it:

- canvas: ``utils_correspondence.resize(img, 840)``: PIL ``LANCZOS`` resize of the 8-bit image so the longest
  side is 840 (short side ``np.around(840 * short / long)``), pasted centred on a black 840 x 840 canvas (offset
  ``(840 - short) // 2``; black = 0 before normalisation). Here: ``family_transform`` (``ResizePolicy``
  ``longest_side_pad`` for the content; keypoints as their ``preprocess_kps_pad``: both axes times
  ``840 / long`` plus the offset, ``corrbench.geometry.UniformScaleTransform``) and ``resize_8bit_pil(..., "lanczos")``; ``interpolation=torch`` resizes on
  the device instead (bilinear, antialiased; not the authors' filter);
- normalisation: ImageNet mean / std (their ``ViTExtractor`` for DINO models), applied after padding, so the
  padding is ``-mean / std`` as theirs;
- tokens: the output of block 11, the LAST block of ViT-B/14, through a forward hook (``facet="token"``), i.e.
  BEFORE the final LayerNorm, CLS token dropped, 60 x 60 patch tokens of width 768
  (``get_intermediate_layers(..., norm=False)`` of corrbench's DINOv2, equal to the official model);
- the positional embedding is the official DINOv2 interpolation (their stride-14 ``ViTExtractor`` leaves the
  model's own ``interpolate_pos_encoding`` in place).

Other sources: a source is an ``nn.Module`` with ``layer_dims`` (the widths of the layers it contributes, in the
adapter's order) whose ``forward(images)`` maps a list of ``(3, H, W)`` images in [0, 1] (original size) to
``(B, sum(layer_dims), g, g)`` on the family's grid (``g = resolution / 14``, 60). The adapter sees the sources
concatenated in the order the method's ``sources`` option lists them (the authors: SD s3, s4, s5, then DINOv2, so
``sources=sd,dino``). Adding one is one call, as ``sd_source.py`` does for Stable Diffusion::

    register_feature_source("sd", build_sd_source, check=check_sd_source)

where ``config`` is the method's option dataclass (``resolution``, ``weights``, ``seed`` ... as the builder
needs) and the optional ``check(config)`` fails early (a missing optional dependency, an unusable resolution)
before any checkpoint or backbone is read. A source name that is not registered is a ConfigError listing those
that are.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.errors import ConfigError
from corrbench.geometry import (ResizeTransform, Size, centred_pad_transform, paste_on_canvas,
                                resize_8bit_pil, resize_image)

PATCH = 14
#: The family's canvas side (their ``ANNO_SIZE`` / ``--dino_size``): 60 x 60 DINOv2 tokens.
FAMILY_RESOLUTION = 840
#: DINOv2 variant of every released checkpoint (``dinov2_vitb14``); smaller ones are for tests.
FAMILY_BACKBONE = "vitb14"
#: ``pil``: PIL LANCZOS on 8-bit images, as the authors; ``torch``: bilinear antialiased on the device.
INTERPOLATIONS = ("pil", "torch")


def family_transform(image_size: Size, resolution: int = FAMILY_RESOLUTION) -> ResizeTransform:
    """Original image -> the family's canvas (``corrbench.geometry.centred_pad_transform``, shared with the
    training engine's ``pad-centre`` rule)."""
    return centred_pad_transform(image_size, resolution)


def family_canvas(image: torch.Tensor, resolution: int = FAMILY_RESOLUTION,
                  interpolation: str = "pil") -> tuple[torch.Tensor, ResizeTransform]:
    """A ``(3, H, W)`` image in [0, 1] -> the ``(3, S, S)`` canvas in [0, 1] (black padding) and its transform."""
    if interpolation not in INTERPOLATIONS:
        raise ConfigError(f"unknown interpolation {interpolation!r}", hint=f"use one of {', '.join(INTERPOLATIONS)}")
    transform = family_transform((int(image.shape[-1]), int(image.shape[-2])), resolution)
    if interpolation == "pil":
        content = resize_8bit_pil(image, transform.resized_size, "lanczos")
    else:
        content = resize_image(image.float(), transform.resized_size, "bilinear")
    return paste_on_canvas(content, transform), transform


class DINOv2Source(nn.Module):
    """Last-block DINOv2 tokens before the final LayerNorm on the family's canvas (see the module docstring).

    ``model`` is a corrbench DINOv2 (``load_dinov2``); the methods build it from their options
    (``build_dinov2_source``), DIY-SC's pseudo-label command from its own (``pseudo_label_folder``)."""

    name = "dino"

    def __init__(self, model: nn.Module, resolution: int = FAMILY_RESOLUTION, interpolation: str = "pil"):
        super().__init__()
        if resolution % PATCH:
            raise ConfigError(f"resolution {resolution} is not a multiple of the patch size {PATCH}")
        self.model = model.requires_grad_(False).eval()
        self.resolution, self.interpolation = resolution, interpolation
        self.layer_dims = (int(self.model.embed_dim),)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        canvases = [family_canvas(image, self.resolution, self.interpolation)[0] for image in images]
        return self.encode_canvases((torch.stack(canvases).to(self.mean.device) - self.mean) / self.std)

    def encode_canvases(self, canvases: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` canvases already normalised with the ImageNet mean / std (the training engine's
        batches) -> ``(B, 768, S / 14, S / 14)`` tokens."""
        dtype = self.model.patch_embed.proj.weight.dtype
        (tokens,) = self.model.get_intermediate_layers(canvases.to(dtype), n=[self.model.n_blocks - 1], reshape=True,
                                                       norm=False)
        return tokens


def build_dinov2_source(config: Any) -> DINOv2Source:
    from corrbench.backbones.dinov2 import load_dinov2

    model = load_dinov2(config.backbone, weights=config.weights, seed=config.seed)
    return DINOv2Source(model, config.resolution, config.interpolation)


SourceBuilder = Callable[[Any], nn.Module]
SourceCheck = Callable[[Any], None]
FEATURE_SOURCES: dict[str, SourceBuilder] = {"dino": build_dinov2_source}
SOURCE_CHECKS: dict[str, SourceCheck] = {}


def register_feature_source(name: str, builder: SourceBuilder, check: SourceCheck | None = None) -> None:
    """Make ``name`` usable in a method's ``sources`` option; ``builder(config)`` returns the source module and
    ``check(config)``, if given, raises a ConfigError before anything is read or downloaded."""
    FEATURE_SOURCES[name] = builder
    if check is not None:
        SOURCE_CHECKS[name] = check


def check_sources(names: Sequence[str], config: Any) -> None:
    """Fail now, with the fix, if a source in ``names`` is unknown or cannot be built with ``config``."""
    if not names:
        raise ConfigError("option 'sources' is empty", hint="name at least one feature source, e.g. sources=dino")
    for name in names:
        if name not in FEATURE_SOURCES:
            raise ConfigError(f"unknown feature source {name!r}",
                              hint=f"available sources: {', '.join(sorted(FEATURE_SOURCES))}")
        if name in SOURCE_CHECKS:
            SOURCE_CHECKS[name](config)


def build_sources(names: Sequence[str], config: Any) -> nn.ModuleList:
    """The sources ``names`` (in the adapter's order), each built from the method's ``config``."""
    check_sources(names, config)
    return nn.ModuleList(FEATURE_SOURCES[name](config) for name in names)


def concatenated_features(sources: nn.ModuleList, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(B, sum of the sources' layer widths, g, g)``: every source's maps, in order, on one grid."""
    maps = [source(images) for source in sources]
    grids = {tuple(m.shape[-2:]) for m in maps}
    if len(grids) != 1:
        raise ConfigError(f"feature sources {[type(s).__name__ for s in sources]} returned grids {sorted(grids)}",
                          hint="each source must return maps on the family's grid (resolution / 14 cells a side)")
    return torch.cat([m.float() for m in maps], dim=1)
