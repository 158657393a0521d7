"""``tiny-vit``: a tiny randomly initialised ViT as a FeatureMatcher.

It exists to exercise the whole feature pipeline (resize policy, feature cache, descriptor sampling,
localisers, back-mapping to original pixels) end to end on a CPU in seconds. Its initialisation is fixed by
its own ``seed`` option, so its numbers are reproducible; they are near chance, as random features should be.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Sequence

import torch
from torch import nn

from corrbench.backbones import IMAGENET_MEAN, IMAGENET_STD
from corrbench.config import Rule, option
from corrbench.geometry import ResizePolicy
from corrbench.matcher import FeatureMatcher
from corrbench.localizers import LOCALIZERS, build_localizer
from corrbench.similarity import Localizer
from corrbench.types import FeatureMap



class TinyViT(nn.Module):
    """Patch embedding, learned positions and a few pre-norm transformer blocks; returns patch tokens."""

    def __init__(self, grid: int, patch: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)  # (B, C, h, w)
        b, c, h, w = x.shape
        tokens = self.norm(self.blocks(x.flatten(2).transpose(1, 2) + self.pos_embed))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class TinyViTMatcher(FeatureMatcher):
    description = "Tiny random ViT features (pipeline test; CPU, seconds); near chance by design"
    matching_options = ("localizer",)

    @dataclasses.dataclass
    class Config:
        resolution: int = option(112, "side of the square canvas images are stretched to (pixels)", ge=1)
        patch_size: int = option(8, "side of a ViT patch (pixels); one feature cell per patch", ge=1)
        dim: int = option(64, "token width", ge=1)
        depth: int = option(2, "number of transformer blocks", ge=1)
        heads: int = option(4, "attention heads per block", ge=1)
        seed: int = option(0, "seed of the random initialisation (the weights depend on it only)")
        localizer: str = option("argmax", "how a similarity map becomes a point (window/sigma/temperature: "
                                "the localiser's defaults)", choices=LOCALIZERS.names())

        rules: ClassVar[tuple[Rule, ...]] = (
            Rule(lambda c: c.resolution % c.patch_size == 0,
                 "resolution {resolution} must be a multiple of patch_size {patch_size}",
                 hint="e.g. --set resolution=112 with patch_size=8"),
            Rule(lambda c: c.dim % c.heads == 0, "dim {dim} must be divisible by heads {heads}",
                 hint="e.g. --set dim=64 with heads=4 (or 2, 8, ...)"),
        )

    def __init__(self, **options):
        super().__init__(**options)
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)  # the weights depend on the method's seed only
            self.backbone = TinyViT(cfg.resolution // cfg.patch_size, cfg.patch_size, cfg.dim, cfg.depth, cfg.heads)
        self.resize = ResizePolicy("stretch", cfg.resolution)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def build_localizer(self) -> Localizer:
        return build_localizer(self.config.localizer)

    def weights_info(self) -> dict:
        return {"source": "random", "sha256": None, "seed": self.config.seed}

    def extract(self, images: Sequence[torch.Tensor]) -> list[FeatureMap]:
        resized = [self.resize.apply(image) for image in images]
        batch = torch.stack([(canvas - self.mean) / self.std for canvas, _ in resized])
        features = self.backbone(batch)
        return [FeatureMap(f, transform) for f, (_, transform) in zip(features, resized)]
