"""Frozen DINOv2 features with nearest-neighbour matching ("DINOv2+NN"), in every size.

Defaults and where they come from:
- ``resolution=840`` with ``resize="longest_side_pad"`` (longest side to 840, centred zero padding, 60 x 60
  tokens): GeoAware-SC, Jamais Vu and DIY-SC's zero-shot DINOv2 setting. The unified benchmark stretches to
  840 x 840 instead: ``--set resize=stretch``.
- ``layer=-1``: the last block's tokens after the final LayerNorm, as every reference uses for DINOv2+NN.
- cosine similarity (L2-normalised descriptors) and ``localizer="argmax"``; ``window-soft-argmax`` uses
  GeoAware-SC's window (7, i.e. 15 x 15 cells) and temperature 0.02; ``gaussian-soft-argmax`` uses sigma 7
  cells and the unified benchmark's temperature 0.03.
- ImageNet mean / std normalisation, bilinear antialiased resizing (PIL's LANCZOS in GeoAware-SC differs
  slightly; the difference is below the resolution of PCK@0.1 and is documented in the README).

Names: ``dinov2`` is ViT-B/14; ``dinov2-vits14``, ``-vitb14``, ``-vitl14``, ``-vitg14`` and their ``-reg``
variants (4 register tokens) choose the backbone.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import torch

from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.config import option
from corrbench.geometry import ResizePolicy
from corrbench.matcher import FeatureMatcher
from corrbench.localizers import LOCALIZERS, build_localizer
from corrbench.similarity import Localizer
from corrbench.types import FeatureMap

PATCH = 14
_LOCALIZER_DEFAULT_TEMPERATURE = {"window-soft-argmax": 0.02, "gaussian-soft-argmax": 0.03}


class DINOv2Matcher(FeatureMatcher):
    """Frozen DINOv2 patch features; subclasses pick the backbone through ``backbone``."""

    backbone: ClassVar[str] = "vitb14"
    description = "Frozen DINOv2 ViT-B/14 features, 840 px, cosine nearest neighbour"
    matching_options = ("localizer", "window", "sigma", "temperature")

    @dataclasses.dataclass
    class Config:
        weights: str | None = option(None, "backbone weights: none = the official file (torch hub cache, else "
                                     "download), a path to a checkpoint, or random")
        resolution: int = option(840, "canvas side in pixels (the longest side for longest_side_pad)",
                                 ge=PATCH, multiple_of=PATCH)
        resize: str = option("longest_side_pad", "how images reach the canvas: longest_side_pad (centred zero "
                             "padding, GeoAware-SC), stretch (unified benchmark), longest_side (no padding), none",
                             choices=ResizePolicy.KINDS)
        layer: int = option(-1, "block whose tokens are the features (after the final LayerNorm); -1 = the last")
        localizer: str = option("argmax", "how a similarity map becomes a point", choices=LOCALIZERS.names())
        window: int = option(7, "radius of the soft-argmax window in cells (7: GeoAware-SC's 15 x 15)", ge=0,
                             used_when={"localizer": ("window-soft-argmax",)})
        sigma: float = option(7.0, "Gaussian suppression width in cells", gt=0,
                              used_when={"localizer": ("gaussian-soft-argmax",)})
        temperature: float | None = option(
            None, "softmax temperature of the soft-argmax; none = the localiser's reference value (window 0.02, "
            "gaussian 0.03)", gt=0, used_when={"localizer": tuple(_LOCALIZER_DEFAULT_TEMPERATURE)})
        seed: int = option(0, "initialisation of weights=random")

    def __init__(self, **options):
        super().__init__(**options)
        from corrbench.backbones.dinov2 import load_dinov2

        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = load_dinov2(self.backbone, weights=cfg.weights)
        self.model.requires_grad_(False).eval()
        depth = self.model.n_blocks
        if not -depth <= cfg.layer < depth:
            from corrbench.errors import ConfigError

            raise ConfigError(f"layer {cfg.layer} does not exist: {self.backbone} has blocks 0..{depth - 1} (or -1)")
        self.block = cfg.layer % depth
        self.resize = ResizePolicy(cfg.resize, cfg.resolution, multiple=PATCH)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def build_localizer(self) -> Localizer:
        cfg = self.config
        settings: dict = {}
        if cfg.localizer == "window-soft-argmax":
            settings["radius"] = cfg.window
        if cfg.localizer == "gaussian-soft-argmax":
            settings["sigma"] = cfg.sigma
        if cfg.localizer in _LOCALIZER_DEFAULT_TEMPERATURE:
            # `is None`, not `or`: an explicit value is used as given (0 is refused by the option's range)
            default = _LOCALIZER_DEFAULT_TEMPERATURE[cfg.localizer]
            settings["temperature"] = default if cfg.temperature is None else cfg.temperature
        return build_localizer(cfg.localizer, **settings)

    @property
    def normalize_features(self) -> bool:
        return True  # DINOv2+NN compares L2-normalised descriptors whatever the localiser

    def weights_info(self) -> dict:
        return self.model.weights_info()

    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        canvases, transforms = zip(*(self.resize.apply(image) for image in images))
        maps: list[FeatureMap] = []
        # images of one canvas size go through the network together
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, canvas in enumerate(canvases):
            by_size.setdefault(tuple(canvas.shape), []).append(i)
        out: dict[int, torch.Tensor] = {}
        for indices in by_size.values():
            batch = torch.stack([(canvases[i] - self.mean) / self.std for i in indices])
            (features,) = self.model.get_intermediate_layers(batch, n=[self.block], reshape=True, norm=True)
            for i, f in zip(indices, features):
                out[i] = f
        for i, transform in enumerate(transforms):
            maps.append(FeatureMap(out[i], transform))
        return maps


def _variant(class_name: str, backbone: str, label: str) -> type[DINOv2Matcher]:
    """A registered size: the class name is importable (results record ``module:Class``)."""
    registers = " with 4 registers" if backbone.endswith("_reg") else ""
    return type(class_name, (DINOv2Matcher,), {
        "backbone": backbone,
        "description": f"Frozen DINOv2 {label}{registers} features, 840 px, cosine nearest neighbour",
        "__module__": __name__,
        "__qualname__": class_name,
    })


DINOv2ViTS14 = _variant("DINOv2ViTS14", "vits14", "ViT-S/14")
DINOv2ViTB14 = _variant("DINOv2ViTB14", "vitb14", "ViT-B/14")
DINOv2ViTL14 = _variant("DINOv2ViTL14", "vitl14", "ViT-L/14")
DINOv2ViTG14 = _variant("DINOv2ViTG14", "vitg14", "ViT-g/14")
DINOv2ViTS14Reg = _variant("DINOv2ViTS14Reg", "vits14_reg", "ViT-S/14")
DINOv2ViTB14Reg = _variant("DINOv2ViTB14Reg", "vitb14_reg", "ViT-B/14")
DINOv2ViTL14Reg = _variant("DINOv2ViTL14Reg", "vitl14_reg", "ViT-L/14")
DINOv2ViTG14Reg = _variant("DINOv2ViTG14Reg", "vitg14_reg", "ViT-g/14")
