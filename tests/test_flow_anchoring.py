"""MARCO flow anchoring (dense self-distillation pseudo-labels): known answers on tiny grids.

The two slowest steps of a straightforward implementation (per-triangle affine solves, per-cluster
dilations of the anchoring filter) have small reference loops here that the vectorised versions must equal.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay

from corrbench import similarity
from corrbench.methods.marco import flow_anchoring as fa
from corrbench.methods.marco import mining
from corrbench.methods.marco.anchoring import anchored_clusters, collect_matches
from corrbench.methods.marco.clustering import (
    bic_merge_gain,
    cluster_flow,
    flow_colour_features,
    kmeans,
    merge_clusters_by_bic,
    quantile_linear,
    random_initial_centres,
)
from corrbench.methods.marco.flow import (
    add_keypoint_seeds,
    piecewise_affine_flow,
    rasterise_triangles,
    triangle_affines,
    triangle_inverses,
    upsample_flow,
)
from corrbench.methods.marco.mining import (
    PairSkipped,
    grid_mutual_matches,
    masks_to_feature_grid,
    mutual_matches,
    sample_matches,
)

# ---------------------------------------------------------------------------------------------------------
# Reference loops (straightforward versions of the two slowest steps).


def reference_loop_triangle_affines(src: np.ndarray, trg: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    """One least-squares solve per triangle: ``[x y 1] @ coef = target`` for x and y -> ``(T, 2, 3)``."""
    out = []
    for tri in simplices:
        system = np.concatenate([src[tri], np.ones((3, 1))], axis=1)
        coef_x = np.linalg.lstsq(system, trg[tri, 0], rcond=None)[0]
        coef_y = np.linalg.lstsq(system, trg[tri, 1], rcond=None)[0]
        out.append(np.stack([coef_x, coef_y]))
    return np.stack(out)


def reference_loop_anchored_clusters(flow, valid, labels, kp_src, kp_trg, radius=10, threshold=0.5):
    """Per cluster: rasterise source and destination regions, dilate each with a box kernel, count keypoints."""
    big_h, big_w = valid.shape
    ys, xs = torch.nonzero(valid, as_tuple=True)
    xd = torch.round(xs.float() + flow[ys, xs, 0]).clamp(0, big_w - 1).long()
    yd = torch.round(ys.float() + flow[ys, xs, 1]).clamp(0, big_h - 1).long()
    kx_s, ky_s = kp_src[:, 0].round().clamp(0, big_w - 1).long(), kp_src[:, 1].round().clamp(0, big_h - 1).long()
    kx_t, ky_t = kp_trg[:, 0].round().clamp(0, big_w - 1).long(), kp_trg[:, 1].round().clamp(0, big_h - 1).long()
    kernel = torch.ones(1, 1, 2 * radius + 1, 2 * radius + 1)
    kept = []
    for cluster in torch.unique(labels).tolist():
        sel = labels == cluster
        src_map = torch.zeros(1, 1, big_h, big_w)
        dst_map = torch.zeros(1, 1, big_h, big_w)
        src_map[0, 0, ys[sel], xs[sel]] = 1
        dst_map[0, 0, yd[sel], xd[sel]] = 1
        src_map = F.conv2d(src_map, kernel, padding=radius)[0, 0] > 0
        dst_map = F.conv2d(dst_map, kernel, padding=radius)[0, 0] > 0
        in_src = src_map[ky_s, kx_s]
        if in_src.sum() == 0:
            continue
        if (in_src & dst_map[ky_t, kx_t]).sum().item() / in_src.sum().item() >= threshold:
            kept.append(cluster)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Synthetic pairs.


def _fourier_field(points: torch.Tensor, channels: int, seed: int, scale: float) -> torch.Tensor:
    """Smooth random features of positions: dot products fall off with distance (an RBF-like kernel)."""
    g = torch.Generator().manual_seed(seed)
    freqs = torch.randn(channels // 2, 2, generator=g, dtype=torch.float64) / scale
    phase = torch.rand(channels // 2, generator=g, dtype=torch.float64) * 2 * math.pi
    z = points.double() @ freqs.T + phase
    return torch.cat([torch.sin(z), torch.cos(z)], dim=-1)


def _affine(theta_deg=8.0, scale=0.9, shift=(1.5, -1.0), centre=(7.5, 7.5)):
    th = math.radians(theta_deg)
    a = torch.tensor([[scale * math.cos(th), -scale * math.sin(th)], [scale * math.sin(th), scale * math.cos(th)]])
    c = torch.tensor(centre)
    t = c - a @ c + torch.tensor(shift)
    return a.double(), t.double()


def _grid_points(h, w):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).double()


def _affine_feature_pair(grid=16, channels=256, seed=0):
    """Target cell v carries the source field at the affine pre-image of v: the warp is A u + t."""
    a, t = _affine(centre=((grid - 1) / 2, (grid - 1) / 2))
    cells = _grid_points(grid, grid)
    src = _fourier_field(cells, channels, seed, scale=2.0)
    trg = _fourier_field((cells - t) @ torch.linalg.inv(a).T, channels, seed, scale=2.0)
    as_map = lambda f: f.T.reshape(channels, grid, grid).float()  # noqa: E731
    return as_map(src), as_map(trg), a, t


def _ellipse(h, w, cx, cy, rx, ry):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def _mining_pair(image=64, grid=16, channels=128, seed=0, num_kp=10):
    """A pair for ``mine_matches``: canvas ``image`` px, ``grid`` cells, target = affine warp of the source."""
    a, t = _affine(theta_deg=6.0, scale=0.95, shift=(3.0, -2.0), centre=(image / 2, image / 2))
    src_mask = _ellipse(image, image, image / 2, image / 2, 0.36 * image, 0.28 * image)
    pix = _grid_points(image, image)
    pre = (pix - t) @ torch.linalg.inv(a).T
    trg_mask = (((pre[:, 0] - image / 2) / (0.36 * image)) ** 2 + ((pre[:, 1] - image / 2) / (0.28 * image)) ** 2 <= 1)
    trg_mask = trg_mask.reshape(image, image)
    cells_px = _grid_points(grid, grid) * image / grid  # the "marco" cell -> pixel rule
    src = _fourier_field(cells_px, channels, seed, scale=image / 8)
    trg = _fourier_field((cells_px - t) @ torch.linalg.inv(a).T, channels, seed, scale=image / 8)
    feats = torch.stack([src.T.reshape(channels, grid, grid), trg.T.reshape(channels, grid, grid)]).float()
    g = torch.Generator().manual_seed(seed + 1)
    angle = torch.rand(num_kp, generator=g, dtype=torch.float64) * 2 * math.pi
    radius = torch.rand(num_kp, generator=g, dtype=torch.float64).sqrt() * 0.8
    kp_src = torch.stack(
        [image / 2 + 0.36 * image * radius * angle.cos(), image / 2 + 0.28 * image * radius * angle.sin()], -1
    )
    kp_trg = kp_src @ a.T + t
    return feats, torch.stack([src_mask, trg_mask]), torch.stack([kp_src, kp_trg]).float(), (a, t)


# ---------------------------------------------------------------------------------------------------------
# Step 0 and step 1.


def test_masks_to_grid_uses_align_corner_samples_and_any_positive_weight():
    # 10 px -> 3 cells: align-corner samples at 0, 4.5 and 9 px
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[0, 4, 4] = True  # bilinear weight 0.25 at the sample (4.5, 4.5) of cell (1, 1): any positive weight counts
    mask[1, 6, 6] = True  # no sample position has a neighbour at 6: the pixel vanishes
    grid = masks_to_feature_grid(mask, (3, 3))
    expected = torch.zeros(2, 3, 3, dtype=torch.bool)
    expected[0, 1, 1] = True
    assert torch.equal(grid, expected)


def test_mutual_matches_find_exactly_the_planted_pairs_in_any_chunking():
    g = torch.Generator().manual_seed(0)
    sources = F.normalize(torch.randn(6, 32, generator=g), dim=1)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    targets = torch.randn(10, 32, generator=g)  # rows 6..9 stay random distractors
    targets[permutation] = sources + 0.05 * torch.randn(6, 32, generator=g)
    for chunk in (1, 4, 4096):
        found = mutual_matches(sources * 3.0, targets, chunk_size=chunk)  # scale is irrelevant (cosine)
        assert found.src_index.tolist() == list(range(6))
        assert found.trg_index.tolist() == permutation.tolist()
        assert (found.num_mutual, found.num_ratio_kept, found.used_fallback) == (6, 6, False)


def _negative_ambiguity_case(num_clean: int):
    """Clean pairs c_i <-> c_i plus a source ``a`` whose best two targets have similarity -0.30 and -0.32."""
    beta = 0.95
    dims = num_clean + 4
    g_axis, a_axis, t1_axis, t2_axis = num_clean, num_clean + 1, num_clean + 2, num_clean + 3
    clean = torch.zeros(num_clean, dims)
    clean[torch.arange(num_clean), torch.arange(num_clean)] = math.sqrt(1 - beta**2)
    clean[:, g_axis] = beta
    a = torch.zeros(1, dims)
    a[0, a_axis], a[0, g_axis] = math.sqrt(0.75), -0.5
    targets = [clean]
    for sim, axis in ((-0.30, t1_axis), (-0.32, t2_axis)):
        t = torch.zeros(1, dims)
        t[0, g_axis] = -0.5
        t[0, a_axis] = (sim - 0.25) / math.sqrt(0.75)
        t[0, axis] = math.sqrt(1 - t[0, a_axis] ** 2 - 0.25)
        targets.append(t)
    return torch.cat([clean, a]), torch.cat(targets)


def test_released_ratio_test_rejects_an_ambiguous_negative_match():
    sources, targets = _negative_ambiguity_case(num_clean=3)
    sims = sources @ targets.T
    torch.testing.assert_close(sims[3, 3:], torch.tensor([-0.30, -0.32]))  # the ambiguous source's best two
    found = mutual_matches(sources, targets)
    assert found.num_mutual == 4  # (a, t1) IS a mutual pair ...
    assert found.src_index.tolist() == [0, 1, 2]  # ... but -0.30 < 0.9 * -0.32 rejects it
    assert not found.used_fallback


def test_ratio_test_falls_back_to_mutual_matches_when_fewer_than_three_pass():
    sources, targets = _negative_ambiguity_case(num_clean=2)
    found = mutual_matches(sources, targets)
    assert found.num_ratio_kept == 2 and found.used_fallback
    assert found.src_index.tolist() == [0, 1, 2] and found.trg_index.tolist() == [0, 1, 2]


def test_released_ratio_test_keeps_positive_ambiguity_and_the_distance_rule_does_not():
    source = torch.tensor([[1.0, 0.0, 0.0]])
    targets = torch.tensor([[0.90, math.sqrt(1 - 0.81), 0.0], [0.89, 0.0, math.sqrt(1 - 0.89**2)]])
    released = mutual_matches(source, targets, min_matches=0)
    lowe = mutual_matches(source, targets, ratio_rule="cosine_distance", min_matches=0)
    assert released.src_index.tolist() == [0] and released.trg_index.tolist() == [0]
    assert lowe.src_index.numel() == 0 and lowe.num_mutual == 1


# ---------------------------------------------------------------------------------------------------------
# Step 2.


def test_batched_triangle_affines_equal_the_per_triangle_loop_including_a_degenerate_one():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(40, 2, generator=g, dtype=torch.float64) * 20
    linear = torch.tensor([[0.9, 0.2], [-0.1, 1.1]], dtype=torch.float64)
    trg = src @ linear + torch.randn(40, 2, generator=g, dtype=torch.float64)
    simplices = Delaunay(src.numpy()).simplices
    simplices = np.concatenate([simplices, [[0, 1, 0]]])  # a zero-area triangle: min-norm least squares
    batched = triangle_affines(src, trg, torch.from_numpy(simplices).long())
    expected = reference_loop_triangle_affines(src.numpy(), trg.numpy(), simplices)
    np.testing.assert_allclose(batched.numpy(), expected, atol=1e-9)


@pytest.mark.parametrize("integer_seeds", [True, False])
def test_rasterised_point_location_equals_scipy_find_simplex(integer_seeds):
    g = torch.Generator().manual_seed(6)
    seeds = torch.rand(30, 2, generator=g, dtype=torch.float64) * 15
    seeds = seeds.round() if integer_seeds else seeds  # integer seeds put many cells exactly on edges
    seeds = torch.unique(seeds, dim=0)
    targets = seeds * 1.1 + torch.randn(seeds.shape, generator=g, dtype=torch.float64)
    mask = torch.rand(16, 16, generator=g) < 0.8
    triangulation = Delaunay(seeds.numpy())
    simplices = torch.from_numpy(triangulation.simplices).long()
    corners = seeds[simplices]
    inverse, degenerate = triangle_inverses(corners)
    for budget in (7, 1 << 22):  # chunked or not
        which = rasterise_triangles(corners, inverse, ~degenerate, mask, budget=budget)
        cells = _grid_points(16, 16)
        expected = torch.from_numpy(triangulation.find_simplex(cells.numpy())).reshape(16, 16).long()
        expected[~mask] = -1
        assert torch.equal(which >= 0, expected >= 0)
        # where the triangles differ (shared edges) their affine maps agree
        affines = triangle_affines(seeds, targets, simplices)
        on = which >= 0
        homogeneous = torch.cat([cells.reshape(16, 16, 2)[on], torch.ones(int(on.sum()), 1, dtype=torch.float64)], 1)
        mine = (affines[which[on]] @ homogeneous[:, :, None])[..., 0]
        theirs = (affines[expected[on]] @ homogeneous[:, :, None])[..., 0]
        torch.testing.assert_close(mine, theirs, atol=1e-9, rtol=0)


def test_piecewise_affine_flow_is_exact_for_affine_seeds_and_zero_outside_the_hull():
    a, t = _affine()
    g = torch.Generator().manual_seed(2)
    seeds = torch.rand(25, 2, generator=g, dtype=torch.float64) * 10 + 3  # hull inside [3, 13]^2
    mask = torch.ones(16, 16, dtype=torch.bool)
    dense = piecewise_affine_flow(seeds, seeds @ a.T + t, mask)
    cells = _grid_points(16, 16).reshape(16, 16, 2)
    truth = cells @ a.T + t - cells
    assert dense.covered.any() and not dense.covered[0].any() and not dense.covered[:, -1].any()
    torch.testing.assert_close(dense.flow[dense.covered], truth[dense.covered], atol=1e-9, rtol=0)
    assert (dense.flow[~dense.covered] == 0).all()
    assert dense.num_triangles == Delaunay(seeds.numpy()).simplices.shape[0]


def test_collinear_seeds_skip_the_pair():
    seeds = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    with pytest.raises(PairSkipped, match="triangulated"):
        piecewise_affine_flow(seeds, seeds, torch.ones(4, 4, dtype=torch.bool))


def test_affine_warp_between_feature_grids_is_recovered_within_one_cell():
    src, trg, a, t = _affine_feature_pair()
    mask = torch.ones(16, 16, dtype=torch.bool)
    src_cells, trg_cells, found = grid_mutual_matches(src, trg, mask, mask)
    assert found.num_mutual >= 30
    dense = piecewise_affine_flow(src_cells, trg_cells, mask)
    cells = _grid_points(16, 16).reshape(16, 16, 2)
    error = (dense.flow.double() - (cells @ a.T + t - cells)).norm(dim=-1)[dense.covered]
    assert dense.covered.sum() >= 100
    assert error.max() < 1.0, f"largest flow error {error.max():.2f} cells"


def test_keypoint_seeds_need_two_pairs_and_both_rounded_cells_inside_the_masks():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 2:6] = True
    none = torch.empty(0, 2)
    kp_src = torch.tensor([[2.4, 2.6], [5.5, 3.0], [7.0, 7.0]])  # rounds to (2, 3): in; (6, 3): out; out
    kp_trg = torch.tensor([[3.0, 3.0], [3.0, 3.0], [3.0, 3.0]])
    src, trg, added = add_keypoint_seeds(none, none, kp_src, kp_trg, mask, mask)
    assert added == 1 and torch.equal(src, kp_src[:1]) and torch.equal(trg, kp_trg[:1])
    _, _, added_single = add_keypoint_seeds(none, none, kp_src[:1], kp_trg[:1], mask, mask)
    assert added_single == 0  # the released code adds GT seeds only with at least two keypoint pairs


# ---------------------------------------------------------------------------------------------------------
# Step 3.


def test_upsampled_flow_is_scaled_to_pixels_with_half_pixel_placement():
    flow = torch.tensor([1.0, 2.0]).expand(4, 4, 2)
    up = upsample_flow(flow, (16, 12))  # (H, W): x scales by 12 / 4, y by 16 / 4
    torch.testing.assert_close(up, torch.tensor([3.0, 8.0]).expand(16, 12, 2))
    ramp = torch.zeros(1, 2, 2)
    ramp[0, 1, 0] = 1.0  # x-flow 0 at cell 0 and 1 at cell 1
    # align_corners=False: pixel centres 0..3 sample cells -0.25, 0.25, 0.75, 1.25 (clamped), times 4 / 2
    torch.testing.assert_close(upsample_flow(ramp, (1, 4))[0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0]))


def test_flow_colour_features_are_the_8_bit_hsv_colours():
    flow = torch.zeros(2, 4, 2)
    flow[0, :2] = torch.tensor([2.0, 0.0])  # +x: hue 0.5 -> cyan, value 2 / (q95 = 2) -> 254 after 8-bit truncation
    flow[0, 2] = torch.tensor([-1.0, 0.0])  # -x: hue 1 -> red, value 1/2 -> 127
    flow[0, 3] = torch.tensor([0.0, 1.0])  # +y: hue 0.75 -> (V/2, 0, V)
    flow[1, 1] = torch.tensor([2.0, 0.0])  # outside the mask
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 1] = False
    features, valid = flow_colour_features(flow, mask)
    assert valid.tolist() == [[True, True, True, True], [False, False, False, False]]  # zero flow: black, invalid
    expected = torch.tensor([[0, 254, 254], [0, 254, 254], [127, 0, 0], [63, 0, 127]]) / 255.0
    torch.testing.assert_close(features, expected)


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_selection_quantile_equals_torch_quantile(n):
    values = torch.rand(n, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(quantile_linear(values, 0.95), torch.quantile(values, 0.95))


def test_bic_merge_gain_has_the_hand_computed_value():
    # two 4-point faces of a cube of corners (+-s)^3: each face has variance (0 + s^2 + s^2) / 3 per dimension,
    # the cube s^2, so the gain is 12 log(2/3) + (3 + 2)/2 log N with N = 16
    s = 0.1
    counts = torch.tensor([4.0], dtype=torch.float64)
    sse = torch.tensor([4 * 2 * s**2], dtype=torch.float64)
    gain, merged_counts, centre, merged_sse = bic_merge_gain(
        counts, torch.tensor([[-s, 0.0, 0.0]]), sse, counts, torch.tensor([[s, 0.0, 0.0]]), sse, num_points=16
    )
    torch.testing.assert_close(gain, torch.tensor([12 * math.log(2 / 3) + 2.5 * math.log(16)], dtype=torch.float64))
    torch.testing.assert_close(merged_sse, torch.tensor([8 * 3 * s**2], dtype=torch.float64))
    assert merged_counts.item() == 8 and torch.allclose(centre, torch.zeros(1, 3, dtype=torch.float64))


def _cube_blobs(centres, s=0.02):
    corners = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)))
    return torch.cat([c + s * corners for c in centres])


def test_bic_merging_recovers_well_separated_clusters_from_an_over_segmentation():
    centres = torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.1, 0.5], [0.3, 0.9, 0.9]])
    points = _cube_blobs(centres)
    faces = torch.cat([torch.stack([c - torch.tensor([0.02, 0, 0]), c + torch.tensor([0.02, 0, 0])]) for c in centres])
    survivors = merge_clusters_by_bic(points, torch.ones(len(points)), faces, k_min=1)
    assert survivors.shape[0] == 3
    torch.testing.assert_close(survivors[survivors[:, 0].argsort()], centres[centres[:, 0].argsort()])


def test_cluster_flow_recovers_the_number_of_constant_flow_parts():
    # parts moving with distinct constant flows have one colour each; k = 7 over-segments nothing then
    flow = torch.zeros(30, 30, 2)
    flow[:, :10] = torch.tensor([2.0, 0.0])
    flow[:, 10:20] = torch.tensor([0.0, -2.0])
    flow[:, 20:] = torch.tensor([-1.0, 1.0])
    features, _ = flow_colour_features(flow, torch.ones(30, 30, dtype=torch.bool))
    labels = cluster_flow(features, k_min=2)
    assert torch.unique(labels).numel() == 3
    parts = labels.reshape(30, 30)
    assert all(torch.unique(parts[:, i : i + 10]).numel() == 1 for i in (0, 10, 20))


def test_released_bic_keeps_the_over_segmentation_of_large_clusters():
    # characterises the released criterion: halving a compact cluster of n points costs ~0.36 n in
    # log-likelihood and saves only 2.5 log N, so clusters of thousands of points are never merged
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.1, 0.1, 0.1], [0.9, 0.1, 0.5], [0.3, 0.9, 0.9]])
    points = torch.cat([c + 0.02 * torch.randn(2000, 3, generator=g) for c in centres])
    assert torch.unique(cluster_flow(points)).numel() == 7


def test_kmeans_is_seeded_and_labels_are_nearest_final_centres():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(500, 3, generator=g)
    first = cluster_flow(x, seed=5)
    assert torch.equal(first, cluster_flow(x, seed=5))
    labels, centres = kmeans(x, random_initial_centres(x, 4, seed=0))
    assert torch.equal(labels, torch.cdist(x, centres).argmin(dim=1))


# ---------------------------------------------------------------------------------------------------------
# Step 4.


def _two_part_flow():
    """64 x 64 canvas; the left part moves by (+2, +1), the right part is mirrored onto the left side."""
    flow = torch.zeros(64, 64, 2)
    valid = torch.zeros(64, 64, dtype=torch.bool)
    valid[20:44, 4:28] = True
    valid[20:44, 36:60] = True
    flow[20:44, 4:28] = torch.tensor([2.0, 1.0])
    xs = torch.arange(36, 60, dtype=torch.float32)
    flow[20:44, 36:60, 0] = (63 - xs + 2) - xs  # x -> 65 - x: lands on the left half
    flow[20:44, 36:60, 1] = 1.0
    ys, xs = torch.nonzero(valid, as_tuple=True)
    labels = (xs >= 32).long()
    kp_src = torch.tensor([[8.0, 25.0], [20.0, 38.0], [45.0, 30.0], [55.0, 22.0]])
    kp_trg = kp_src + torch.tensor([2.0, 1.0])  # the true motion everywhere
    return flow, valid, labels, kp_src, kp_trg


def test_a_mirrored_cluster_is_rejected_and_a_consistent_one_kept():
    flow, valid, labels, kp_src, kp_trg = _two_part_flow()
    keep, fraction = anchored_clusters(flow, valid, labels, kp_src, kp_trg)
    assert keep.tolist() == [True, False]
    assert fraction.tolist() == [1.0, 0.0]
    assert reference_loop_anchored_clusters(flow, valid, labels, kp_src, kp_trg) == [0]


def test_a_cluster_without_gt_keypoints_is_dropped():
    flow, valid, labels, kp_src, kp_trg = _two_part_flow()
    keep, fraction = anchored_clusters(flow, valid, labels, kp_src[:2], kp_trg[:2])
    assert keep.tolist() == [True, False] and math.isnan(fraction[1].item())


def test_vectorised_anchoring_equals_the_per_cluster_loop():
    g = torch.Generator().manual_seed(4)
    for trial in range(4):
        valid = torch.rand(48, 40, generator=g) < 0.6
        flow = torch.randn(48, 40, 2, generator=g) * 6
        n = int(valid.sum())
        labels = torch.randint(0, 5, (n,), generator=g)
        kp_src = torch.rand(12, 2, generator=g) * torch.tensor([44.0, 52.0]) - 2  # some beyond the edge: clamped
        kp_trg = torch.rand(12, 2, generator=g) * torch.tensor([44.0, 52.0]) - 2
        for radius, threshold in ((10, 0.5), (3, 0.5), (2, 0.3)):
            keep, _ = anchored_clusters(flow, valid, labels, kp_src, kp_trg, 5, radius, threshold)
            expected = reference_loop_anchored_clusters(flow, valid, labels, kp_src, kp_trg, radius, threshold)
            assert torch.nonzero(keep).flatten().tolist() == expected, (trial, radius)


def test_collected_matches_come_from_kept_clusters_and_land_in_the_target_mask():
    flow, valid, labels, _, _ = _two_part_flow()
    target_mask = torch.ones(64, 64, dtype=torch.bool)
    target_mask[:, 20:] = False  # cuts the destinations of the left part at x >= 20
    source, target = collect_matches(flow, valid, labels, torch.tensor([True, False]), target_mask)
    assert source.dtype == torch.long and source.shape == target.shape
    assert (source[:, 0] < 28).all() and (target[:, 0] < 20).all()
    assert torch.equal(target, source + torch.tensor([2, 1]))
    assert source.shape[0] == 24 * 14  # x in 4..17 keeps x + 2 < 20
    assert torch.equal(source[1], torch.tensor([5, 20]))  # raster order within a cluster


def test_pairs_with_too_few_matches_are_skipped_and_sampling_is_seeded():
    points = torch.arange(2000).reshape(1000, 2)
    assert sample_matches(points[:99], points[:99]) is None
    src, trg = sample_matches(points[:100], points[:100] + 1)
    assert src.shape == (100, 2) and torch.equal(trg, src + 1)
    def draw(seed):
        return sample_matches(points, points, generator=torch.Generator().manual_seed(seed))[0]

    assert draw(0).shape == (300, 2) and torch.unique(draw(0)[:, 0]).numel() == 300
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))


# ---------------------------------------------------------------------------------------------------------
# Step 5.


def test_loss_on_a_hand_computable_input():
    scores = torch.zeros(3, 3, 3)  # three points on a 3 x 3 grid, canvas 5 x 5 px
    scores[1, 2, 0] = 1e4  # a sharp peak at cell (x=0, y=2)
    scores[2, 1, 2] = 10 * math.log(3)  # weight 3 at cell (2, 1) against 1 elsewhere (temperature 10)
    targets = torch.tensor([[4.0, 0.0], [0.0, 4.0], [2.0, 2.0]])
    # point 0: uniform -> centre (1, 1) = (0, 0) normalised; target (4, 0) px -> cell (2, 0) -> (1, -1): sqrt(2)
    # point 1: peak (0, 2) -> (-1, 1); target (0, 4) px -> cell (0, 2): 0
    # point 2: x = (3 * 2 + 7) / 11, y = 1 -> (2/11, 0); target (2, 2) px -> cell (1, 1) -> (0, 0): 2/11
    expected = (math.sqrt(2) + 0 + 2 / 11) / 3
    scores.requires_grad_(True)
    loss = fa.flow_anchoring_loss(scores, targets, image_size=(5, 5))
    torch.testing.assert_close(loss, torch.tensor(expected), atol=1e-6, rtol=0)
    loss.backward()
    assert scores.grad is not None and scores.grad[2].abs().sum() > 0
    weighted = fa.flow_anchoring_loss(scores.detach(), targets, (5, 5), weight=2.0, num_points=6)
    torch.testing.assert_close(weighted, torch.tensor(2 * expected * 3 / 6), atol=1e-6, rtol=0)


def test_loss_truncates_targets_to_cells_like_the_released_int32_tensor():
    scores = torch.zeros(1, 3, 3)  # predicts the centre cell (1, 1)
    target = torch.tensor([[3.0, 3.0]])  # 3 / 4 * 2 = 1.5 cells -> truncated to 1
    assert fa.flow_anchoring_loss(scores, target, (5, 5)).item() == pytest.approx(0.0, abs=1e-7)
    exact = fa.flow_anchoring_loss(scores, target, (5, 5), quantize_targets=False)
    assert exact.item() == pytest.approx(math.sqrt(0.5), abs=1e-6)


def test_loss_without_points_is_a_differentiable_zero():
    scores = torch.zeros(0, 4, 4, requires_grad=True)
    loss = fa.flow_anchoring_loss(scores, torch.zeros(0, 2), (8, 8))
    assert loss.item() == 0.0 and loss.requires_grad


def test_mined_similarity_maps_sample_source_descriptors_like_marco():
    g = torch.Generator().manual_seed(5)
    src, trg = torch.randn(2, 6, 4, 4, generator=g).unbind(0)
    px = torch.tensor([[2.0, 4.0], [3.0, 0.0]])  # canvas 8 x 8, grid 4: cells x * 4 / 8 = (1, 2) and (1.5, 0)
    maps = fa.mined_similarity_maps(src, trg, px, image_size=(8, 8))
    first = src[:, 2, 1]
    second = (src[:, 0, 1] + src[:, 0, 2]) / 2
    torch.testing.assert_close(maps[0], torch.einsum("c,chw->hw", first, trg))
    torch.testing.assert_close(maps[1], torch.einsum("c,chw->hw", second, trg))


# ---------------------------------------------------------------------------------------------------------
# The chain.


def test_mine_matches_follows_the_true_warp_and_reports_every_step():
    feats, masks, keypoints, (a, t) = _mining_pair()
    mined = fa.mine_matches(feats, masks, keypoints, seed=0)
    assert mined.skipped is None, mined.counts
    assert list(mined.counts) == [
        "src_cells", "trg_cells", "mutual", "ratio_kept", "ratio_fallback", "seeds_mnn", "keypoint_seeds",
        "triangles", "flow_cells", "valid_pixels", "clusters", "anchored_clusters", "matches", "sampled",
    ]  # fmt: skip
    assert 100 <= mined.num_matches <= 300 and mined.counts["sampled"] == mined.num_matches
    assert mined.counts["keypoint_seeds"] == 10
    assert masks[0][mined.source[:, 1].long(), mined.source[:, 0].long()].all()
    assert masks[1][mined.target[:, 1].long(), mined.target[:, 0].long()].all()
    error = (mined.target.double() - (mined.source.double() @ a.T + t)).norm(dim=1)
    assert error.max() < 6.0, f"largest pseudo-label error {error.max():.1f} px"  # 1.5 cells of 4 px


def test_mine_matches_is_deterministic_under_a_seed():
    feats, masks, keypoints, _ = _mining_pair()
    first = fa.mine_matches(feats, masks, keypoints, seed=3)
    again = fa.mine_matches(feats, masks, keypoints, generator=torch.Generator().manual_seed(3))
    other = fa.mine_matches(feats, masks, keypoints, seed=4)
    assert first.counts["matches"] > 300
    assert torch.equal(first.source, again.source) and torch.equal(first.target, again.target)
    assert not torch.equal(first.source, other.source)


def test_mine_matches_skips_pairs_and_says_why():
    feats, masks, keypoints, _ = _mining_pair()
    no_anchor = fa.mine_matches(feats, masks, keypoints[:, :0])
    assert no_anchor.num_matches == 0 and "anchored matches" in no_anchor.skipped
    assert no_anchor.counts["anchored_clusters"] == 0
    tiny = torch.zeros_like(masks)
    tiny[:, 30:34, 30:34] = True
    few = fa.mine_matches(feats, tiny, keypoints)
    assert few.num_matches == 0 and few.skipped is not None and "sampled" not in few.counts
    empty = fa.mine_matches(feats, torch.zeros_like(masks), keypoints)
    assert "no feature cell" in empty.skipped and empty.source.shape == (0, 2)


def test_mine_matches_follows_the_input_dtype_and_profiles():
    feats, masks, keypoints, _ = _mining_pair()
    mined64 = fa.mine_matches(feats.double(), masks, keypoints, profile=True)
    assert mined64.source.dtype == torch.float64 and mined64.target.dtype == torch.float64
    assert set(mined64.timings_ms) == {"mutual_matches", "dense_flow", "clustering", "anchoring_and_sampling"}
    mined16 = fa.mine_matches(feats.bfloat16(), masks, keypoints)
    assert mined16.source.dtype == torch.float32


def test_bad_shapes_name_the_argument():
    feats, masks, keypoints, _ = _mining_pair()
    with pytest.raises(ValueError, match="teacher_features"):
        fa.mine_matches(feats[0], masks, keypoints)
    with pytest.raises(ValueError, match="keypoints"):
        fa.mine_matches(feats, masks, keypoints[0])
    with pytest.raises(ValueError, match="ratio_rule"):
        fa.FlowAnchoringConfig(ratio_rule="lowe")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mine_matches_on_gpu_stays_on_gpu_and_agrees_with_cpu():
    feats, masks, keypoints, _ = _mining_pair()
    cpu = fa.mine_matches(feats, masks, keypoints, seed=0)
    gpu = fa.mine_matches(feats.cuda(), masks.cuda(), keypoints.cuda(), seed=0)
    assert gpu.source.is_cuda and gpu.target.is_cuda
    assert gpu.counts["matches"] == pytest.approx(cpu.counts["matches"], rel=0.02)
    scores = torch.zeros(2, 3, 3, device="cuda", requires_grad=True)
    assert fa.flow_anchoring_loss(scores, torch.zeros(2, 2, device="cuda"), (5, 5)).is_cuda


def test_raw_nearest_matches_ask_for_the_row_side_only(monkeypatch):
    asked = []

    def spy(*args, **kwargs):
        asked.append(kwargs.get("columns", True))
        return similarity.nearest_neighbours(*args, **kwargs)

    monkeypatch.setattr(mining, "nearest_neighbours", spy)
    features, mask = torch.randn(2, 4, 5, 6), torch.ones(5, 6, dtype=torch.bool)
    src, trg = mining.grid_nearest_matches(features[0], features[1], mask, mask)
    assert asked == [False] and src.shape == trg.shape == (30, 2)
