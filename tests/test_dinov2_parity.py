"""corrbench's DINOv2 equals the official implementation: golden outputs made by facebookresearch/dinov2.

``tests/data/dinov2_official_vits14.npz`` was written by the official code (commit b8931f7b of
facebookresearch/dinov2, CPU, float32, one thread, xFormers absent) from ``dinov2_vits14(pretrained=False)``
and ``dinov2_vits14_reg(pretrained=False)`` loaded with the seeded weights of ``tools/golden/seeded_weights.py`` (``dinov2_weights``), on
the seeded inputs below: ``forward_features`` tokens and ``get_intermediate_layers(x, n=2, reshape=True,
norm=True)[0]``. Two input sizes per model (56 x 70 and 98 x 84) take the positional-embedding interpolation
of each release (offset 0.1 without antialiasing for the original release, explicit size with antialiasing
for the register release) to grids other than the 37 x 37 it was trained at.

Weights and inputs are regenerated here from torch's CPU generator, so the file holds outputs only.
``tools/golden/make_dinov2_golden.py --dinov2 <checkout>`` rewrites the file (byte-identical arrays).
The tolerance is 2e-5 absolute: float32 results may differ in the last bits between machines (BLAS kernels,
thread counts); on the machine that wrote the file the largest difference was below 1e-5 (printed below).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.backbones.dinov2 import DinoVisionTransformer, expected_state_dict_shapes

from repo_tools import load_tool

GOLDEN = Path(__file__).parent / "data" / "dinov2_official_vits14.npz"
TOLERANCE = 2e-5
CASES = {"vits14": 11, "vits14_reg": 12}  # release -> the seed its weights were drawn with
SIZES = ((56, 70), (98, 84))
SEEDED = load_tool("golden/seeded_weights.py")


@pytest.mark.parametrize("release", sorted(CASES))
def test_features_equal_the_official_implementation(release):
    golden = np.load(GOLDEN)
    seed = CASES[release]
    model = DinoVisionTransformer.from_spec(release).eval()
    model.load_state_dict(SEEDED.dinov2_weights(expected_state_dict_shapes(release), seed), strict=True)
    inputs = torch.Generator().manual_seed(100 + seed)
    worst = 0.0
    for h, w in SIZES:
        x = torch.randn(1, 3, h, w, generator=inputs)
        with torch.no_grad():
            features = model.forward_features(x)
            layer = model.get_intermediate_layers(x, n=2, reshape=True, norm=True)[0]
        tag = f"{release}_{h}x{w}"
        got = {
            "cls": features["x_norm_clstoken"],
            "patch": features["x_norm_patchtokens"],
            "reg": features["x_norm_regtokens"],
            "layer_minus2": layer,
        }
        for name, tensor in got.items():
            expected = golden[f"{tag}_{name}"]
            assert tuple(tensor.shape) == expected.shape, f"{tag} {name}"
            if expected.size:
                worst = max(worst, float(np.abs(tensor.numpy() - expected).max()))
    print(f"{release}: largest absolute difference to the official outputs {worst:.2e}")
    assert worst <= TOLERANCE
