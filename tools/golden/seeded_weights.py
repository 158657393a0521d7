"""The seeded weights the golden files were made with: one definition shared by the scripts that write the
files (run in the authors' environments, beside their code) and the tests that rebuild the same weights in
corrbench's models. Torch's CPU generator draws them, so every machine gets the same values."""

from __future__ import annotations

import torch


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
