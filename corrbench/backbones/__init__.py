"""Backbone networks implemented in corrbench (state-dict compatible with their official releases)."""

from __future__ import annotations

from .dinov2 import DINOV2_SPECS, DinoV2Spec, DinoVisionTransformer, dinov2_spec, load_dinov2
from .weights import file_sha256, hub_checkpoint_path, resolve_weights

__all__ = [
    "DINOV2_SPECS",
    "DinoV2Spec",
    "DinoVisionTransformer",
    "dinov2_spec",
    "file_sha256",
    "hub_checkpoint_path",
    "load_dinov2",
    "resolve_weights",
]
