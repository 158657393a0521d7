"""corrbench's DINOv2 equals the official implementation: golden outputs made by facebookresearch/dinov2.

``tests/data/dinov2_official_vits14.npz`` was written by the official code (commit b8931f7b of
facebookresearch/dinov2, CPU, float32, one thread, xFormers absent) from ``dinov2_vits14(pretrained=False)``
and ``dinov2_vits14_reg(pretrained=False)`` loaded with the seeded weights of ``tools/golden/golden_cases.py`` (``dinov2_weights``, ``dinov2_outputs``), on
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

from corrbench.backbones.dinov2 import DinoVisionTransformer, expected_state_dict_shapes

from repo_tools import load_tool

GOLDEN = Path(__file__).parent / "data" / "dinov2_official_vits14.npz"
TOLERANCE = 2e-5
CASES = load_tool("golden/golden_cases.py")


@pytest.mark.parametrize("release", sorted(CASES.DINOV2_CASES))
def test_features_equal_the_official_implementation(release):
    golden = np.load(GOLDEN)
    model = DinoVisionTransformer.from_spec(release).eval()
    weights = CASES.dinov2_weights(expected_state_dict_shapes(release), CASES.DINOV2_CASES[release])
    model.load_state_dict(weights, strict=True)
    got = CASES.dinov2_outputs(model, release)
    assert set(got) <= set(golden.files) and len(got) == 4 * len(CASES.DINOV2_SIZES)
    worst = 0.0
    for key, array in got.items():
        expected = golden[key]
        assert array.shape == expected.shape, key
        if expected.size:
            worst = max(worst, float(np.abs(array - expected).max()))
    print(f"{release}: largest absolute difference to the official outputs {worst:.2e}")
    assert worst <= TOLERANCE
