"""Backbone networks implemented in corrbench (state-dict compatible with their official releases)."""

from __future__ import annotations

from .dinov2 import DINOV2_SPECS, DinoV2Spec, DinoVisionTransformer, dinov2_spec, load_dinov2
from .weights import cached_file_sha256, hub_checkpoint_path, resolve_weights

# Per-channel mean and std of ImageNet's RGB values in [0, 1]: backbones pretrained on it (DINOv2) expect
# their inputs normalised with these, so every method and the training data use this one pair.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "DINOV2_SPECS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DinoV2Spec",
    "DinoVisionTransformer",
    "cached_file_sha256",
    "dinov2_spec",
    "hub_checkpoint_path",
    "load_dinov2",
    "resolve_weights",
]
