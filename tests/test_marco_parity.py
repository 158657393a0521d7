"""corrbench's MARCO equals the authors' code: golden outputs made by visinf/MARCO.

``tests/data/marco_official_tiny.npz`` was written by the authors' code (visinf/MARCO commit 1ec16b93, with
facebookresearch/dinov2 commit b8931f7b as its backbone, loaded from a local checkout with
``pretrained=False``; torch 2.13.0+cpu, float32, one thread, xFormers absent). Their model was built by their
own factory with a tiny configuration (ViT-S/14 with registers, adapters in blocks 8..11 of width
``int(0.5 * 384)``, 2 upsampling stages, softmax temperature 10), then every parameter was overwritten with the
seeded values of ``tools/golden/golden_cases.py`` (``marco_weights``). ``tools/golden/make_marco_golden.py`` (run against local checkouts of
both repositories; its docstring gives the environment) rewrites the file byte for byte. It holds outputs only:

- ``canvas{56,70}_*``: on seeded normalised square canvases, their ``forward_backbone`` features (every 24th
  channel), ``sample_descriptors_w_sim`` similarity maps and ``forward`` predictions for seeded source points
  and edge points ((0, 0), the last pixel, half a pixel beyond it, 1e-4);
- ``hub_*`` / ``datasets_*``: their torch.hub helper ``preprocess_data`` (longest side to 56, bottom/right zero
  padding) on seeded 8-bit PNG images of 45 x 31 and 30 x 52 pixels, the source points it scales, the same
  points after the datasets' clamp ``regularise_coordinates(eps=1e-4)`` on the resized image, and ``forward``'s
  predictions from each.

Tolerances are absolute, with room for float32 results that differ in the last bits on other machines: features
1e-4 (values up to 6), similarity maps 2e-3 (raw dot products of 384 channels, values up to 150), predicted points
1e-3 canvas pixels, the network input 1e-6. On the machine that wrote the file the input, features and similarity
maps showed no difference and predicted points differed by at most 7e-5 px (printed by the tests below).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.methods.marco.matcher import (
    SOURCE_CLAMP_EPS,
    MARCOMatcher,
    clamp_to_content,
    predict_canvas_points,
    similarity_at_points,
)
from corrbench.methods.marco.model import MARCOArchitecture, MARCOModel

from repo_tools import load_tool

GOLDEN = Path(__file__).parent / "data" / "marco_official_tiny.npz"
ARCHITECTURE = MARCOArchitecture("vits14_reg", adapter_blocks=(8, 12), bottleneck_factor=0.5, upsampling_stages=2)
WEIGHT_SEED = 21
CHANNELS = slice(0, None, 24)
SEEDED = load_tool("golden/golden_cases.py")
TOLERANCE = {"features": 1e-4, "similarity": 2e-3, "points": 1e-3, "pixels": 1e-6}


def load_seeded(model: MARCOModel) -> MARCOModel:
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    model.load_state_dict(SEEDED.marco_weights(shapes, WEIGHT_SEED), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


@pytest.fixture(scope="module")
def seeded_model():
    return load_seeded(MARCOModel(ARCHITECTURE))


def largest_difference(got: torch.Tensor, expected: np.ndarray) -> float:
    assert tuple(got.shape) == expected.shape
    return float(np.abs(got.detach().numpy() - expected).max())


@pytest.mark.parametrize("side", [56, 70])
def test_network_and_matching_equal_the_authors(golden, seeded_model, side):
    model = seeded_model
    inputs = torch.Generator().manual_seed(1234)
    if side == 70:  # the golden inputs were drawn one after the other from one generator
        torch.randn(1, 2, 3, 56, 56, generator=inputs), torch.rand(1, 6, 2, generator=inputs)
    samples = torch.randn(1, 2, 3, side, side, generator=inputs)[0]
    points = torch.from_numpy(golden[f"canvas{side}_points"])
    assert torch.allclose(points[:6], torch.rand(6, 2, generator=inputs) * (side - 1))
    canvas = (side, side)
    with torch.no_grad():
        features = model(samples)
        similarity = similarity_at_points(features[:1], features[1:], points[None], canvas)[0]
        predicted = predict_canvas_points(features[0], features[1], points, canvas, canvas)
    measured = {
        "features": largest_difference(features[:, CHANNELS], golden[f"canvas{side}_features"]),
        "similarity": largest_difference(similarity, golden[f"canvas{side}_similarity"]),
        "points": largest_difference(predicted, golden[f"canvas{side}_predicted"]),
    }
    print(f"{side} px canvas: largest absolute differences to the authors' outputs {measured}")
    assert all(measured[name] <= TOLERANCE[name] for name in measured), measured


def seeded_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The golden file's 8-bit source (45 x 31) and target (30 x 52) images as (3, H, W) in [0, 1]."""
    images = torch.Generator().manual_seed(4321)
    src = torch.randint(0, 256, (31, 45, 3), generator=images, dtype=torch.uint8)
    trg = torch.randint(0, 256, (52, 30, 3), generator=images, dtype=torch.uint8)
    return src.permute(2, 0, 1).float() / 255, trg.permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def tiny_matcher(seeded_model):
    return MARCOMatcher(seeded_model, resolution=56, resize="longest_side_pad").eval()


def test_longest_side_pad_input_and_source_clamp_equal_the_authors(golden, tiny_matcher):
    src_image, trg_image = seeded_images()
    (src_canvas, src_transform), (trg_canvas, trg_transform) = map(tiny_matcher.canvas, (src_image, trg_image))
    assert largest_difference(torch.stack([src_canvas, trg_canvas]), golden["hub_samples"]) <= TOLERANCE["pixels"]

    points = torch.from_numpy(golden["hub_src_points"])
    scaled = src_transform.forward(points)
    assert largest_difference(scaled, golden["hub_src_kps"]) <= TOLERANCE["pixels"]  # the hub helper's scaling
    clamped = clamp_to_content(scaled, src_transform)
    assert largest_difference(clamped, golden["datasets_src_kps"]) <= TOLERANCE["pixels"]  # the datasets' clamp

    predicted = tiny_matcher.transfer_points(src_image, trg_image, points)
    difference = largest_difference(trg_transform.forward(predicted), golden["datasets_predicted"])
    print(f"predictions after the datasets' clamp: largest difference {difference:.2e} canvas px")
    assert difference <= TOLERANCE["points"]


def test_source_clamp_differs_from_the_hub_helper_only_where_the_note_says(golden):
    """matcher.py's note: the hub helper does not clamp, the datasets clamp the resized points into
    ``[1e-4, side - 1 - 1e-4]``; so points below 1e-4 move up by at most 1e-4 and points beyond ``side - 1 - 1e-4``
    (the last resized pixel, which the hub helper accepts up to ``side``) move down by less than 1 + 1e-4."""
    hub, datasets = golden["hub_src_kps"], golden["datasets_src_kps"]
    resized = np.array([56.0, 39.0])  # the 45 x 31 source with its longest side at 56
    low = hub < SOURCE_CLAMP_EPS
    high = hub > resized - 1 - SOURCE_CLAMP_EPS
    assert low.any() and high.any()  # (0, 0) and points in the last row / column
    np.testing.assert_array_equal(datasets[~(low | high)], hub[~(low | high)])
    assert np.all((datasets - hub)[low] > 0) and np.all((datasets - hub)[low] <= SOURCE_CLAMP_EPS)
    assert np.all((hub - datasets)[high] > 0) and np.all((hub - datasets)[high] < 1 + SOURCE_CLAMP_EPS)
    np.testing.assert_allclose(datasets[high], np.broadcast_to(resized - 1 - SOURCE_CLAMP_EPS, hub.shape)[high])
