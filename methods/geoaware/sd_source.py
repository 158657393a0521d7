"""The Stable Diffusion feature source of the family's methods (``sources=sd,dino``): the SD part of the adapter
input, built from a method's options and registered as ``"sd"`` with ``features.register_feature_source``.

What the authors feed the adapter (GeoAware-SC ``pck_train.py`` ``prepare_feature_paths_and_load`` on the files
``preprocess_map.py`` saves; DIY-SC ``utils_correspondence.load_features_and_masks``, the same): the image resized
to 960 px (``resize(img, 960)``: longest side, PIL LANCZOS, centred black padding -- the family's canvas function
at 960), SD's s3, s4, s5 of that canvas (``diffusion.StableDiffusionFeatures``), s4 and s5 bilinearly resized to
the 60 x 60 grid, concatenated in that order BEFORE DINOv2's tokens: ``feature_dims = [640, 1280, 1280, 768]``,
so the methods list ``sources=sd,dino``. A mirrored source (pose alignment) is mirrored before its canvas, as
their ``_flip`` files are.

The SD canvas is 16 px per grid cell (their README's ``load_model(..., image_size=num_patches*16)``;
``preprocess_map.py``'s fixed 960 for 60 cells), so s3 (stride 16) lies on the grid cell for cell. The grid is
``resolution / 14``, which must therefore be a multiple of 4 (the canvas a multiple of 64).

Weights follow the method's ``weights`` option: ``random`` builds SD 1.5's architectures with random weights
offline (``StableDiffusionFeatures.random``, seeded by ``seed``); anything else means the released models
(``from_pretrained``: the Hugging Face cache, downloaded on first use; ``weights=PATH`` names DINOv2's file, not
SD's). Without the ``diffusion`` extra, ``check_sd_source`` stops the method before any file is read or
downloaded, with one line naming the extra.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from corrbench.backbones.weights import RANDOM
from corrbench.errors import ConfigError, DataError

from .diffusion import StableDiffusionFeatures, StableDiffusionSpec, require_diffusion_extra
from .features import PATCH, family_canvas, register_feature_source

#: SD canvas pixels per grid cell (960 / 60).
SD_PIXELS_PER_CELL = 16


def sd_canvas_size(resolution: int) -> int:
    """The SD canvas side for the family canvas ``resolution`` (840 -> 960)."""
    return SD_PIXELS_PER_CELL * (resolution // PATCH)


def check_sd_source(config: Any) -> None:
    """The SD source can be built with ``config``: the extra is installed and the canvas fits the UNet."""
    size = sd_canvas_size(config.resolution)
    if size % 64:
        raise ConfigError(
            f"sources=sd needs resolution / 14 to be a multiple of 4 (the SD canvas, 16 px per cell, must be a "
            f"multiple of 64): resolution {config.resolution} gives a {size} px SD canvas",
            hint="use resolution=840 (the authors') or another multiple of 56")
    require_diffusion_extra()


class StableDiffusionSource(nn.Module):
    """SD s3, s4, s5 of each image's SD canvas on the family's grid, ``(B, sum(layer_dims), g, g)``."""

    name = "sd"

    def __init__(self, model: StableDiffusionFeatures, grid: int, interpolation: str = "pil"):
        super().__init__()
        self.model, self.grid, self.interpolation = model, grid, interpolation
        self.layer_dims = model.tap_channels

    def forward(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        size = self.model.spec.image_size
        canvases = torch.stack([family_canvas(image, size, self.interpolation)[0] for image in images])
        maps = self.model(canvases.to(self.model.noise.device))
        return StableDiffusionFeatures.on_grid(maps, self.grid)


def build_sd_source(config: Any, architectures: Mapping[str, dict] | None = None) -> StableDiffusionSource:
    """The source for a method's ``config``; ``architectures`` (``unet``, ``vae``, ``text``, ``clip`` configs)
    replace SD 1.5's for ``weights=random`` (tests build tiny ones)."""
    check_sd_source(config)
    spec = StableDiffusionSpec(image_size=sd_canvas_size(config.resolution))
    if config.weights == RANDOM:
        model = StableDiffusionFeatures.random(spec, seed=config.seed, **(architectures or {}))
    else:
        try:
            model = StableDiffusionFeatures.from_pretrained(spec)
        except OSError as exc:  # offline without the Hugging Face cache, or a revision that does not exist
            raise DataError(f"cannot load Stable Diffusion {spec.model_id}@{spec.revision} or "
                            f"{spec.clip_model_id}: {(str(exc).splitlines() or [type(exc).__name__])[0]}",
                            hint="run once with internet access (files go to the Hugging Face cache, $HF_HOME), "
                            "or weights=random for an offline smoke test") from None
    return StableDiffusionSource(model, config.resolution // PATCH, config.interpolation)


register_feature_source("sd", build_sd_source, check=check_sd_source)
