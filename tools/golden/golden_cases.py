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


# ---------------------------------------------------------------------------------------------------------
# MARCO's training losses and flow-anchoring stages (tools/golden/make_marco_flow_golden.py,
# tests/test_marco_flow_parity.py): crafted inputs small enough that the golden file holds only outputs.

#: Canvas side (pixels) and teacher grid side (cells) of the crafted flow pair: 4 pixels per cell.
FLOW_CANVAS, FLOW_GRID, FLOW_CHANNELS = 64, 16, 16
#: The motions of the crafted pair, in cells: source cells left of column 8 move by ``(-2, 1)``; the others
#: right and down, by ``(1, 2)``, ``(2, 2)`` or ``(3, 2)`` in bands of 2 columns (several flow colours for the
#: clustering, graded magnitudes so that the colour scale, the 95th percentile, matters; triangles spanning
#: bands blend them; the two halves move apart, so no two source cells land on the same target cell).
def _motion_of(x: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` motion in cells of source cell column ``x`` (integer-valued)."""
    half = FLOW_GRID // 2
    right_dx = 1.0 + torch.div(x - half, 2, rounding_mode="floor").clamp(min=0).to(torch.float32)
    return torch.stack((torch.where(x < half, -2.0, right_dx), torch.where(x < half, 1.0, 2.0)), dim=-1)


def marco_flow_pair(seed: int = 31) -> dict[str, torch.Tensor]:
    """One training pair for the mining chain: smooth teacher features ``(2, C, 16, 16)`` whose target map is
    the source map moved by ``_motion_of`` (+ noise; background cells random), canvas masks ``(2, 64, 64)``
    (an ellipse and its moved pixels) and 2 GT keypoint pairs ``(2, 2, 2)`` in canvas pixels."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(1, FLOW_CHANNELS, 5, 5, generator=g)
    source = torch.nn.functional.interpolate(coarse, size=(FLOW_GRID, FLOW_GRID), mode="bicubic",
                                             align_corners=True)[0]
    target = torch.randn(FLOW_CHANNELS, FLOW_GRID, FLOW_GRID, generator=g)
    ys, xs = torch.meshgrid(torch.arange(FLOW_GRID), torch.arange(FLOW_GRID), indexing="ij")
    moved = torch.stack((xs, ys), dim=-1) + _motion_of(xs).long()
    inside = ((moved >= 0) & (moved < FLOW_GRID)).all(dim=-1)
    inside[6:9, 9:12] = False  # a hole: these cells keep random targets, so the GT pair inside it seeds the flow
    noise = 0.05 * torch.randn(FLOW_CHANNELS, FLOW_GRID, FLOW_GRID, generator=g)
    target[:, moved[..., 1][inside], moved[..., 0][inside]] = (source + noise)[:, ys[inside], xs[inside]]

    side, scale = FLOW_CANVAS, FLOW_CANVAS // FLOW_GRID
    py, px = torch.meshgrid(torch.arange(side, dtype=torch.float32), torch.arange(side, dtype=torch.float32),
                            indexing="ij")
    src_mask = ((px - 30.0) / 20.0) ** 2 + ((py - 26.0) / 15.0) ** 2 <= 1.0
    trg_mask = torch.zeros_like(src_mask)
    step = _motion_of(torch.div(px, scale, rounding_mode="floor")) * scale
    dest = (torch.stack((px, py), dim=-1) + step).long().clamp(0, side - 1)
    trg_mask[dest[..., 1][src_mask], dest[..., 0][src_mask]] = True
    # two GT pairs: the first, in the hole of the features, follows the motion up to annotation noise
    # (1.3, -0.7) px, so as a seed it shapes the flow there; the second is annotated 20 px below
    # where the flow takes it, so the clusters around it fail the anchoring
    kp_src = torch.tensor([[41.0, 29.0], [20.0, 30.0]])
    kp_trg = kp_src + _motion_of(torch.div(kp_src[:, 0], scale, rounding_mode="floor")) * scale
    kp_trg += torch.tensor([[1.3, -0.7], [0.0, 20.0]])
    return {"features": torch.stack((source, target)), "masks": torch.stack((src_mask, trg_mask)),
            "keypoints": torch.stack((kp_src, kp_trg))}


#: The ratio-test cases (directions in degrees of 2-channel features). The released test
#: ``best1 >= 0.9 (best2 + 1e-8)`` fails only when a row's best two cosines are both negative and close, so
#: every source lies within 30 degrees of 0 except one at 130 degrees, whose best target (230 degrees) sees it
#: as its own best source (a mutual match of cosine -0.17) while a target at 231 degrees comes second (-0.19):
#: that match fails the test. "drops_one" keeps four matches near 0 degrees, "falls_back" only two, fewer than
#: 3, so the released code falls back to the plain mutual matches.
RATIO_CASES = {"drops_one": (-20.0, -5.0, 10.0, 20.0), "falls_back": (-10.0, 15.0)}
RATIO_OUTLIERS = {"source": 130.0, "targets": (230.0, 231.0)}
RATIO_SOURCE_OUTLIER_CELL = (4, 4)  # (x, y) on the 8 x 8 grid
RATIO_TARGET_CELLS = ((1, 1), (6, 1), (1, 6), (6, 6), (3, 3), (5, 5))


def _directions(degrees: torch.Tensor) -> torch.Tensor:
    radians = degrees.to(torch.float64) * np.pi / 180
    return torch.stack((radians.cos(), radians.sin()), dim=0)


def marco_ratio_pair(case: str, seed: int = 7) -> dict[str, torch.Tensor]:
    """Grid-level inputs where the released ratio test decides (see ``RATIO_CASES``): 2-channel features on an
    8 x 8 grid, every source cell against the few target cells of the case; masks ``(2, 8, 8)`` on the grid."""
    g = torch.Generator().manual_seed(seed)
    degrees = (torch.rand(8, 8, generator=g, dtype=torch.float64) - 0.5) * 60
    x, y = RATIO_SOURCE_OUTLIER_CELL
    degrees[y, x] = RATIO_OUTLIERS["source"]
    source = _directions(degrees) * (0.5 + torch.rand(8, 8, generator=g, dtype=torch.float64))
    target = torch.zeros(2, 8, 8, dtype=torch.float64)
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0] = True
    for (x, y), angle in zip(RATIO_TARGET_CELLS, RATIO_CASES[case] + RATIO_OUTLIERS["targets"]):
        target[:, y, x] = _directions(torch.tensor(angle))
        masks[1, y, x] = True
    return {"features": torch.stack((source, target)).float(), "masks": masks}


def marco_colour_points(seed: int = 19) -> torch.Tensor:
    """``(90, 3)`` 8-bit colours in [0, 1] from three tight blobs: few enough points that BIC merges some of
    k-means' 7 clusters (6 remain), and close enough to the merge threshold that a penalty of ``(D + 1)/2`` or
    ``(D + 3)/2`` per ``log N`` instead of ``(D + 2)/2`` would merge fewer or more."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.8, 0.2, 0.1], [0.1, 0.7, 0.3], [0.3, 0.3, 0.9]])
    points = centres.repeat_interleave(30, dim=0) + 0.04 * torch.randn(90, 3, generator=g)
    return torch.floor(points.clamp(0, 1) * 255) / 255


def marco_anchoring_case() -> dict[str, torch.Tensor]:
    """A 40 x 40 flow of two clusters (left half of a square moves by (3, 0), right half by (0, 3)) and three GT
    pairs placed so that the 10 px radius and the ``>=`` of the 50% rule decide: the left cluster counts its own
    keypoint (right target) and one 6 px outside it annotated far off (1 of 2, kept on the threshold); the right
    cluster counts that far-off one (its own) and two 8 and 9 px outside it with the right targets (2 of 3; with a
    5 px radius it would count 0 of 1 and be dropped)."""
    flow = torch.zeros(40, 40, 2)
    valid = torch.zeros(40, 40, dtype=torch.bool)
    valid[10:30, 5:25] = True
    flow[10:30, 5:15] = torch.tensor([3.0, 0.0])
    flow[10:30, 15:25] = torch.tensor([0.0, 3.0])
    ys, xs = torch.nonzero(valid, as_tuple=True)
    labels = (xs >= 15).long()
    keypoints = torch.tensor([[[7.0, 20.0], [20.0, 20.0], [33.0, 20.0]],
                              [[10.0, 20.0], [35.0, 2.0], [33.0, 23.0]]])
    return {"flow": flow, "valid": valid, "labels": labels, "keypoints": keypoints}


def marco_loss_case(seed: int = 9) -> dict[str, torch.Tensor]:
    """Inputs of MARCO's two training losses: raw similarity maps ``(2, 5, 12, 12)`` (temperature-10 scale),
    GT target points ``(2, 5, 2)`` on a 48 x 48 canvas (interior, fractional, on and near the border), the
    released visibility mask (last row of pair 1 is padding), and mined target pixels ``(1, 7, 2)`` int32."""
    g = torch.Generator().manual_seed(seed)
    similarity = 15.0 * torch.randn(2, 5, 12, 12, generator=g, dtype=torch.float64)
    interior = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 47
    edges = torch.tensor([[[0.0, 0.0], [47.0, 12.5]], [[46.2, 47.0], [3.0, 0.4]]], dtype=torch.float64)
    visible = torch.ones(2, 5, dtype=torch.bool)
    visible[1, 4] = False
    mined = torch.randint(0, 48, (1, 7, 2), generator=g, dtype=torch.int32)
    mined[0, :2] = torch.tensor([[0, 0], [47, 47]], dtype=torch.int32)
    return {"similarity": similarity, "targets": torch.cat((interior, edges), dim=1), "visible": visible,
            "mined_scores": similarity[1, :, :, :].repeat(2, 1, 1)[:7], "mined_targets": mined}
