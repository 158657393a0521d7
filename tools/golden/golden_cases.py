"""The seeded weights and inputs the golden files are made from: one definition shared by the scripts that write
the files (run in the authors' environments, beside their code) and the tests that rebuild the same cases in
corrbench's models. Torch's CPU generator draws them, so every machine gets the same values."""

from __future__ import annotations

import numpy as np
import torch

#: DINOv2 releases -> the seed their weights are drawn with; the input sizes (grids other than the 37 x 37 the
#: releases were trained at, so each release's positional-embedding interpolation is exercised).
DINOV2_CASES = {"vits14": 11, "vits14_reg": 12}
DINOV2_SIZES = ((56, 70), (98, 84))


def dinov2_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """One draw per key in checkpoint order (the order of ``shapes``); norm weights near 1 keep activations
    sane, the rest small."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        draw = torch.randn(shape, generator=generator, dtype=torch.float32)
        norm = key.endswith(("norm1.weight", "norm2.weight", "norm.weight"))
        state[key] = 1.0 + 0.1 * draw if norm else 0.05 * draw
    return state


def marco_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """One draw per key in sorted key order (corrbench's key names); weights of norm layers near 1, the rest
    small."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key in sorted(shapes):
        draw = torch.randn(shapes[key], generator=generator, dtype=torch.float32)
        is_norm_weight = "norm" in key.split(".")[-2] and key.endswith(".weight")
        state[key] = 1.0 + 0.1 * draw if is_norm_weight else 0.05 * draw
    return state


def dinov2_outputs(model: torch.nn.Module, release: str) -> dict[str, np.ndarray]:
    """What the DINOv2 golden file holds for ``release``: ``forward_features`` tokens and
    ``get_intermediate_layers(x, n=2, reshape=True, norm=True)[0]`` on the seeded inputs, for a model (official
    or corrbench's: both have these methods) already holding ``dinov2_weights`` of that release."""
    inputs = torch.Generator().manual_seed(100 + DINOV2_CASES[release])
    out = {}
    for h, w in DINOV2_SIZES:
        x = torch.randn(1, 3, h, w, generator=inputs)
        with torch.no_grad():
            features = model.forward_features(x)
            layer = model.get_intermediate_layers(x, n=2, reshape=True, norm=True)[0]
        tag = f"{release}_{h}x{w}"
        out[f"{tag}_cls"] = features["x_norm_clstoken"].numpy()
        out[f"{tag}_patch"] = features["x_norm_patchtokens"].numpy()
        out[f"{tag}_reg"] = features["x_norm_regtokens"].numpy()
        out[f"{tag}_layer_minus2"] = layer.numpy()
    return out
