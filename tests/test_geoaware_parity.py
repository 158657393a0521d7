"""The GeoAware-SC family equals the authors' code (golden outputs of their own functions, made by
tools/golden/geoaware/make_family_parity_golden.py from Junyi42/GeoAware-SC 99fd6b6a and odunkel/DIY-SC e1121c07).

Tolerances (CPU, float32): adapter outputs 1e-5 relative; canvases exact (8-bit); points 1e-3 px. Inputs are
rebuilt here from ``numpy.random.RandomState`` exactly as the generator draws them (numpy keeps those streams
stable). The released DIY-SC adapter is checked only where its file is already in the torch hub cache (never
downloaded here, so CI skips it); its golden output is committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.backbones.weights import hub_checkpoint_path
from corrbench.files import file_sha256
from corrbench.methods.geoaware import DIY_SC_DINO, AggregationNetwork, family_canvas, family_transform
from corrbench.methods.geoaware.adapter import load_adapter_state
from corrbench.methods.geoaware.matcher import (family_localizer, normalize_descriptors, pose_aligned_canvas_points,
                                                transfer_canvas_points)
from corrbench.methods.geoaware.pose_alignment import flip_groups, flip_plan, masked_nn_distance
from corrbench.methods.geoaware.weights import resolve_adapter_checkpoint

DATA = Path(__file__).parent / "data"
GOLDEN = np.load(DATA / "geoaware_family_golden.npz")
ADAPTER_SEED, MATCH_SEED, CANVAS_SEED, RELEASE_SEED, PARAMETER_SEED, POSE_SEED = 0, 1, 2, 3, 4, 5
GRID, CHANNELS, ANNO, CANVAS = 60, 16, 840, 28


def tiny_adapter() -> AggregationNetwork:
    """The generator's adapter: layers 32 (with a projection shortcut) and 64 (identity shortcut), every
    parameter drawn in sorted key order."""
    net = AggregationNetwork([32, 64], projection_dim=64, norm_groups=8)
    rng = np.random.RandomState(PARAMETER_SEED)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    values = {k: torch.from_numpy(np.asarray(rng.standard_normal(shapes[k]) * (1.0 if shapes[k] else 0.5),
                                             dtype=np.float32)) for k in sorted(shapes)}
    net.load_state_dict(values, strict=True)
    return net.eval()


def test_adapter_output_equals_the_authors():
    x = torch.from_numpy(np.random.RandomState(ADAPTER_SEED).standard_normal((1, 96, 4, 4)).astype(np.float32))
    with torch.no_grad():
        out = tiny_adapter()(x)
    torch.testing.assert_close(out, torch.from_numpy(GOLDEN["adapter_output"]), rtol=1e-5, atol=1e-6)


def test_checkpoint_with_fewer_mixing_weights_loads_as_the_authors():
    four = AggregationNetwork([32] * 4, projection_dim=64, norm_groups=8)
    with torch.no_grad():
        four.mixing_weights.copy_(torch.from_numpy(GOLDEN["tolerance_checkpoint_mixing"]))
    five = AggregationNetwork([32] * 5, projection_dim=64, norm_groups=8)
    load_adapter_state(five, four.state_dict(), "four-layer checkpoint")
    torch.testing.assert_close(five.mixing_weights.detach(), torch.from_numpy(GOLDEN["tolerance_loaded_mixing"]))
    for key, value in four.state_dict().items():  # the four stages came from the checkpoint
        if key.startswith("bottleneck_layers."):
            torch.testing.assert_close(five.state_dict()[key], value)


@pytest.mark.parametrize("case", [0, 1])
def test_canvas_and_keypoints_equal_the_authors_resize(case):
    rng = np.random.RandomState(CANVAS_SEED)
    images = [rng.randint(0, 256, size=(20, 30, 3), dtype=np.uint8), rng.randint(0, 256, size=(30, 20, 3), dtype=np.uint8)]
    image = torch.from_numpy(images[case]).permute(2, 0, 1).float() / 255
    canvas, transform = family_canvas(image, CANVAS, "pil")
    ours = (canvas * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, GOLDEN[f"canvas_{case}"])
    assert transform == family_transform((image.shape[-1], image.shape[-2]), CANVAS)
    points = torch.from_numpy(GOLDEN[f"canvas_points_{case}"])
    torch.testing.assert_close(transform.forward(points), torch.from_numpy(GOLDEN[f"canvas_points_out_{case}"]),
                               rtol=0, atol=1e-4)


def match_maps() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.RandomState(MATCH_SEED)
    trg = rng.standard_normal((GRID, GRID, CHANNELS)).astype(np.float32)
    trg[..., CHANNELS // 2:] = 0  # targets span half the channels ...
    src = np.roll(trg, shift=(3, -2), axis=(0, 1)) + 0.6 * rng.standard_normal(trg.shape).astype(np.float32)
    weak = rng.rand(GRID, GRID) < 0.35
    noise = rng.standard_normal((int(weak.sum()), CHANNELS)).astype(np.float32)
    noise[:, : CHANNELS // 2] *= 0.02  # ... weak sources lie almost in the other half: cosine peaks ~0.05
    src[weak] = noise
    as_map = lambda a: normalize_descriptors(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1), dim=0)
    return as_map(src), as_map(trg)


@pytest.mark.parametrize("name, localizer, window", [
    ("window7", "window-soft-argmax", 7), ("window5", "window-soft-argmax", 5), ("window0", "window-soft-argmax", 0),
    ("argmax", "argmax", 7),
])
def test_transferred_points_equal_the_authors(name, localizer, window):
    src, trg = match_maps()
    points = torch.from_numpy(GOLDEN["match_points"])
    ours = transfer_canvas_points(src, trg, points, ANNO, family_localizer(localizer, window, 0.02)).float()
    torch.testing.assert_close(ours, torch.from_numpy(GOLDEN[f"match_{name}"]), rtol=0, atol=1e-3)


def pose_pair() -> dict[str, np.ndarray]:
    """The generator's 'car' pair: descriptors drawn as it draws them, keypoints, visibility."""
    rng = np.random.RandomState(POSE_SEED)
    trg = rng.standard_normal((GRID, GRID, CHANNELS)).astype(np.float32)
    mirrored = np.roll(trg, shift=(1, 2), axis=(0, 1)) + 0.3 * rng.standard_normal(trg.shape).astype(np.float32)
    src = np.roll(trg, shift=(1, 2), axis=(0, 1)) + 1.5 * rng.standard_normal(trg.shape).astype(np.float32)
    src_kps = rng.uniform(20, 820, size=(30, 2)).astype(np.float32)
    as_map = lambda a: normalize_descriptors(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1), dim=0)
    return {"src": as_map(src), "mirrored": as_map(mirrored), "trg": as_map(trg), "src_kps": src_kps}


@pytest.mark.parametrize("case, plain, mirrored", [("flip_wins", "src", "mirrored"), ("flip_loses", "mirrored", "src")])
def test_pose_alignment_equals_the_authors(case, plain, mirrored):
    pair = pose_pair()
    visible = [int(i) for i in GOLDEN["pose_visible"]]  # mutually visible ids: the pair's listed keypoints
    query, replace = flip_plan(flip_groups("spair71k", "car"), [str(i) for i in visible])
    canvas = torch.from_numpy(pair["src_kps"][visible])
    ours = pose_aligned_canvas_points(pair[plain], pair[mirrored], pair["trg"], canvas, query, replace, ANNO,
                                      family_localizer()).float()
    torch.testing.assert_close(ours, torch.from_numpy(GOLDEN[f"pose_{case}"]), rtol=0, atol=1e-3)


def test_pose_alignment_mask_criterion_equals_the_authors():
    """Their default criterion (get_distance on foreground masks) keeps the source as is where MUTUAL_NN flips."""
    pair = pose_pair()
    masks = {}
    for name, (y0, y1, x0, x1) in {"trg": (280, 560, 280, 560), "src": (294, 574, 308, 588),
                                   "mirrored": (0, 280, 560, 840)}.items():  # the generator's pose_masks
        masks[name] = torch.zeros(ANNO, ANNO)
        masks[name][y0:y1, x0:x1] = 1
    original = masked_nn_distance(pair["src"], pair["trg"], masks["src"], masks["trg"])
    flipped = masked_nn_distance(pair["mirrored"], pair["trg"], masks["mirrored"], masks["trg"])
    np.testing.assert_allclose([original, flipped], GOLDEN["pose_mask_keeps_distances"], rtol=1e-5)
    visible = [int(i) for i in GOLDEN["pose_visible"]]
    query, replace = flip_plan(flip_groups("spair71k", "car"), [str(i) for i in visible])
    canvas = torch.from_numpy(pair["src_kps"][visible])
    ours = pose_aligned_canvas_points(pair["src"], pair["mirrored"], pair["trg"], canvas, query, replace, ANNO,
                                      family_localizer(), (masks["src"], masks["mirrored"], masks["trg"])).float()
    torch.testing.assert_close(ours, torch.from_numpy(GOLDEN["pose_mask_keeps"]), rtol=0, atol=1e-3)
    assert not np.allclose(GOLDEN["pose_mask_keeps"], GOLDEN["pose_flip_wins"], atol=1e-3)  # the criterion decides


def test_released_diy_sc_adapter_equals_the_authors():
    path = hub_checkpoint_path(DIY_SC_DINO.filename)
    if not path.is_file() or file_sha256(path) != DIY_SC_DINO.sha256:
        pytest.skip(f"the released DIY-SC adapter is not in the torch hub cache ({path}); never downloaded in tests")
    state, _ = resolve_adapter_checkpoint(None, DIY_SC_DINO, "diy-sc")
    net = AggregationNetwork([768], projection_dim=768)
    load_adapter_state(net, state, str(path))
    x = torch.from_numpy(np.random.RandomState(RELEASE_SEED).standard_normal((1, 768, 2, 2)).astype(np.float32))
    with torch.no_grad():
        out = net.eval()(x)
    golden = np.load(DATA / "geoaware_diy_sc_release_golden.npz")["release_output"]
    torch.testing.assert_close(out, torch.from_numpy(golden), rtol=1e-5, atol=1e-6)
