"""MARCO's dense self-distillation by flow anchoring: pseudo-label mining and its loss, as tensor functions.

Per training pair, the EMA teacher's upsampled features give pseudo-correspondences that densify the sparse
ground truth (paper Sec. 3.3, Algorithm 1; released code ``engine.mine_dense_matches`` + ``util/flow.py``):

1. ``mutual_matches``: mutual nearest neighbours between the source and target cells inside the object
   masks, cosine similarity on L2-normalised features, streamed in row chunks (the ``N x M`` similarity
   matrix never exists at once; ONE pass of ``corrbench.similarity.nearest_neighbours`` yields the row top-2
   and the running column maximum, where the released code makes two passes), plus the released "ratio
   test" (see below).
2. ``add_keypoint_seeds`` + ``piecewise_affine_flow``: GT keypoint pairs that fall inside both masks join
   the seeds; scipy's Delaunay triangulation of the source seeds; ``triangle_affines`` solves every
   triangle's affine map at once (closed-form 3 x 3 inverses); ``rasterise_triangles`` finds each mask cell's
   triangle by barycentric tests over the triangles' bounding boxes (vectorised, on the device; scipy's
   ``find_simplex`` in the released code), and every covered cell gets its triangle's affine flow.
3. ``upsample_flow`` -> ``flow_colour_features`` -> ``cluster_flow``: the flow goes to image resolution and
   is clustered in its HSV colour encoding with k-means (k = 7, seeded) and greedy BIC merging (min 3).
4. ``anchored_clusters`` -> ``collect_matches`` -> ``sample_matches``: clusters whose flow carries the GT
   source keypoints to the GT target keypoints survive; their pixels whose destination is inside the target
   mask are the matches; pairs with < 100 are skipped; 300 are sampled (seeded).
5. ``flow_anchoring_loss``: soft-argmax of the student's similarity map per mined source point, Euclidean
   distance to the mined target in [-1, 1] coordinates, summed and divided by the number of mined points.

``mine_matches`` chains 0-4 for one pair and returns the mined pairs plus per-step counts for logging;
``mined_similarity_maps`` builds the student's maps for step 5 exactly as MARCO samples descriptors.

Coordinates (``(x, y)`` everywhere; cell ``(j, i)`` of an ``h x w`` grid has coordinate ``(j, i)``;
image pixels are pixels of the training canvas, integer = pixel centre; sizes of tensors are ``(H, W)``):

- masks -> grid: ``F.interpolate(mask, (h, w), bilinear, align_corners=True) > 0`` (a cell is inside if
  any pixel with a non-zero bilinear weight at its align-corner sample position is; released ``engine.py``).
- keypoints px -> cells: ``c = x * w / W`` (corrbench cell rule ``"marco"``; ``scale_keypoints_to_featmap``).
- flow: computed in cells, then ``F.interpolate(bilinear, align_corners=False)`` to ``(H, W)`` and scaled by
  ``W / w``, ``H / h`` (``util/flow.upsample_flow``). Note the interpolation places cell ``j`` at pixel
  ``(j + 0.5) W / w - 0.5`` while the keypoint rule places it at ``j W / w``: the released code mixes the two
  (a ~1.25 px shift at 630 px / 180 cells for non-translational flow); reproduced as is.
- destination of pixel ``(x, y)``: ``round(x + u), round(y + v)`` (half to even), clamped into the image.
- mined pairs: integer-valued pixels, source = a source-mask pixel, target = its rounded destination.
- loss: source pixels -> cells with ``x * w / W`` and bilinear sampling with ``align_corners=True`` (border
  padding); target pixels -> cells with ``x / (W - 1) * (w - 1)`` TRUNCATED toward zero (the released
  ``scaling_coordinates`` writes the float result back into the int32 match tensor), then both sides
  normalised as ``2 c / (w - 1) - 1``. ``quantize_targets=False`` keeps the exact (untruncated) targets.

Released code versus paper (the released code is followed; the paper's value in brackets):

- ratio test: the code keeps a mutual match if ``best1 >= 0.9 * (best2 + 1e-8)`` on SIMILARITIES of the row
  (source) side, which can only fail when the second-best similarity is negative (for ``best2 >= 9e-8`` it
  always holds because ``best1 >= best2``): ambiguous positive matches are NOT rejected. If fewer than 3
  matches survive, the code falls back to the plain mutual matches. [paper: no ratio test, plain MNN].
  ``ratio_rule="cosine_distance"`` offers Lowe's test on cosine distances ``1 - s`` for ablations.
- GT seeds: added only when the pair has at least 2 keypoint pairs (``keypoints.numel() >= 6``) and both
  rounded, clamped cells are inside the grid masks; the unrounded cell coordinates are used.
- clustering: the 3-D RGB colour of the flow's HSV encoding (hue = direction, value = magnitude over the 95th
  percentile of the non-zero magnitudes, saturation 1, quantised to 8 bits; pixels whose colour is black are
  dropped), k-means k = 7 then greedy BIC merging down to at least 3 clusters [paper: flow vectors,
  k = 15 + BIC]. Pairs with < 300 coloured pixels are skipped.
- anchoring: a cluster is kept if at least 50% of the GT source keypoints that lie in its source region
  dilated by a 21 x 21 square (10 px Chebyshev radius) have their GT target inside its dilated destination
  region; a cluster with no GT source keypoint is dropped [paper: "contains a pair of annotated keypoints"].
- loss: Euclidean norm, weight 1, temperature 10 on raw dot products, no Gaussian suppression
  [paper: squared L2]. Matches are sampled to 300 per pair [paper: silent].

k-means and BIC (own implementation of the released behaviour of ``torch_kmeans.KMeans`` + ``kmeans_bic``):
k distinct samples drawn uniformly as initial centres (``torch.multinomial`` on a CPU generator seeded with
123, the library's default seed; on CPU this draws the library's very indices), Lloyd iterations (at most 100)
until the mean centre shift < 1e-4, an empty cluster's centre becomes the zero vector (the library's
normalised-mean update), labels = nearest final centre. BIC of a cluster with ``n`` points and squared error
``sse`` in ``D = 3`` dimensions is the spherical-Gaussian log-likelihood
``-n/2 (D log(2 pi sigma^2) + 1)``, ``sigma^2 = max(sse / (n D + 1e-12), 1e-12)`` (the constant cancels in the
merge gain), and merging two clusters gains ``LL(merged) - LL(a) - LL(b) + (D + 2)/2 log N`` (one mean,
one variance and one weight fewer). Each round considers the pairs ``(i, nn(i))`` with ``nn(i) > i``, merges
the pair of largest positive gain into its count-weighted mean (``sse`` grows by the between-centre
scatter), reassigns all points to the nearest remaining centre and recounts, dropping empty clusters; it
stops when no gain is positive or 3 clusters remain; a final k-means (at most 50 iterations) starts from the
surviving centres. Own choices, equivalent up to float rounding: k-means and BIC statistics run in float64
(the released code: float32) on the distinct colours weighted by their multiplicities, distances by
``|c|^2 - 2 x.c``. On the same inputs the labels agree with the released functions on >= 99.9% of the
pixels (near-ties: the library measures ``|x - c + 1e-6|``), and the kept clusters and collected matches
were identical in every comparison made (up to 630 px, 180 cells). Consequence of the released criterion:
at training scale it practically never merges (see ``cluster_flow``), so pairs keep the 7 k-means clusters.

Ablation variants (paper Tab. 4, "Dense self-distillation" rows; ``FlowAnchoringConfig`` switches, recorded in
a run's config through ``MARCOTrainingSettings``; none exists in the released code, so these are our
reading of the paper's text). Every variant ends like the full chain: candidate pairs in integer canvas
pixels, skipped below ``min_matches``, ``num_samples`` drawn, the same loss.

- ``pseudo_labels="nearest"`` ("+ Raw flow"; Fig. 2's "semantic flow from raw feature matches"): every
  masked source cell paired with its nearest masked target cell (cosine, Eq. 10, ``grid_nearest_matches``);
  no mutual check, no ratio test, no densification, no clustering or anchoring.
- ``pseudo_labels="mutual"`` ("+ MNN matches"): exactly the mutual matches of step 1 (with the released
  ratio test and its fallback, i.e. the Delaunay seeds without GT keypoints); nothing after step 1.
- ``keypoint_seeds=False, anchor_clusters=False`` ("+ Delaunay & warp"): steps 1-2 without GT seeds, then
  every flow pixel whose destination is in the target mask; no clustering (it serves only the anchoring,
  and keeping every cluster selects every pixel) and no GT-anchored filtering.
Cell matches become pixels by ``cells_to_canvas_pixels`` (``round(c W / w)``, the inverse of the loss's
source rule ``x w / W``); the loss truncates targets as for the flow's pixels.

Everything runs on the device of the inputs (GPU when they are on GPU) except scipy's Delaunay
triangulation, which sees only the seed coordinates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay, QhullError

from corrbench.geometry import Size, cell_centres, pixels_to_cells
from corrbench.similarity import nearest_neighbours

from .matcher import CELL_RULE, similarity_at_points

RATIO_RULES = ("released", "cosine_distance")
#: What becomes the pseudo-labels (``FlowAnchoringConfig.pseudo_labels``; see "Ablation variants" above).
PSEUDO_LABEL_SOURCES = ("flow", "mutual", "nearest")


@dataclass(frozen=True)
class FlowAnchoringConfig:
    """The mining settings; defaults are the released ``configs/train/train.yaml`` and ``util/flow.py``."""

    ratio: float = 0.9  # Lowe-style ratio of the row side (see the module docstring for the released rule)
    ratio_rule: str = "released"
    chunk_size: int = 4096  # source rows per similarity chunk
    min_seed_matches: int = 3  # fewer mutual matches: the pair is skipped (no triangulation possible)
    k_init: int = 7  # flow.flow_k [paper: 15]
    k_min: int = 3
    kmeans_seed: int = 123  # torch_kmeans' default seed
    kmeans_max_iter: int = 100
    refine_max_iter: int = 50
    kmeans_tol: float = 1e-4
    anchor_radius: int = 10  # px, square dilation of the cluster regions
    anchor_threshold: float = 0.5
    min_valid_pixels: int = 300  # the released code reuses sample_n_dense here
    min_matches: int = 100
    num_samples: int = 300  # flow.sample_n_dense
    # Ablation switches (paper Tab. 4; the defaults are MARCO's chain, see "Ablation variants"):
    pseudo_labels: str = "flow"  # flow: Delaunay flow | mutual: the MNN matches | nearest: raw NN flow
    keypoint_seeds: bool = True  # GT keypoint pairs join the Delaunay seeds
    anchor_clusters: bool = True  # k-means + BIC clustering and GT-anchored cluster filtering

    def __post_init__(self) -> None:
        if self.ratio_rule not in RATIO_RULES:
            raise ValueError(f"FlowAnchoringConfig.ratio_rule: use one of {RATIO_RULES}, got {self.ratio_rule!r}")
        if self.pseudo_labels not in PSEUDO_LABEL_SOURCES:
            raise ValueError(
                f"FlowAnchoringConfig.pseudo_labels: use one of {PSEUDO_LABEL_SOURCES}, got {self.pseudo_labels!r}"
            )
        if self.pseudo_labels != "flow" and (self.keypoint_seeds or self.anchor_clusters):
            raise ValueError(
                f"FlowAnchoringConfig: keypoint_seeds and anchor_clusters act on the Delaunay flow only; with "
                f"pseudo_labels={self.pseudo_labels!r} set both to False (the flow-mnn-only / flow-raw presets do)"
            )
        if self.k_min < 1 or self.k_init < 2:
            raise ValueError(f"FlowAnchoringConfig: need k_init >= 2 and k_min >= 1, got {self.k_init}, {self.k_min}")
        if self.chunk_size < 1 or self.num_samples < 1:
            raise ValueError("FlowAnchoringConfig: chunk_size and num_samples must be positive")


class PairSkipped(Exception):
    """A pair yields no pseudo-labels (the released code silently skips it); the message says why."""


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 inputs stay float64; everything else (float32, half, bfloat16) is processed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------------------
# Step 0: masks on the feature grid.


def masks_to_feature_grid(masks: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """``(..., H, W)`` image masks -> ``(..., h, w)`` bool grid masks, as the released ``engine.py`` does.

    Bilinear resampling with ``align_corners=True``, then any positive value counts: a cell is inside when a
    mask pixel has a non-zero weight at the cell's align-corner sample position ``j (W - 1) / (w - 1)``.
    """
    if masks.ndim < 2:
        raise ValueError(f"masks_to_feature_grid: masks must be (..., H, W), got {tuple(masks.shape)}")
    lead, (big_h, big_w) = masks.shape[:-2], masks.shape[-2:]
    flat = masks.reshape(-1, 1, big_h, big_w).float()
    small = F.interpolate(flat, size=tuple(grid_hw), mode="bilinear", align_corners=True)
    return (small > 0).reshape(*lead, *grid_hw)


# ---------------------------------------------------------------------------------------------------------
# Step 1: mutual nearest neighbours with the released ratio test.


@dataclass(frozen=True)
class MutualMatches:
    """Index pairs into the source / target descriptor lists, and what each filter kept."""

    src_index: torch.Tensor  # (n,) long
    trg_index: torch.Tensor  # (n,) long
    num_mutual: int  # mutual nearest neighbours
    num_ratio_kept: int  # mutual AND passing the ratio test
    used_fallback: bool  # fewer than min_matches passed both, so the plain mutual matches were used


def mutual_matches(
    src_desc: torch.Tensor,
    trg_desc: torch.Tensor,
    ratio: float = 0.9,
    ratio_rule: str = "released",
    chunk_size: int = 4096,
    min_matches: int = 3,
) -> MutualMatches:
    """Mutual nearest neighbours of ``(N, C)`` and ``(M, C)`` descriptors under cosine similarity.

    One pass of ``corrbench.similarity.nearest_neighbours`` over chunks of ``chunk_size`` source rows gives the
    rows' best two target similarities and each target column's best source (the first row wins ties, as a
    full argmax would). The ratio test is applied on the row side (see the module docstring for the released
    rule); when fewer than ``min_matches`` pairs pass it, the plain mutual pairs are returned.
    """
    if src_desc.ndim != 2 or trg_desc.ndim != 2 or src_desc.shape[1] != trg_desc.shape[1]:
        raise ValueError(
            f"mutual_matches: descriptors must be (N, C) and (M, C), "
            f"got {tuple(src_desc.shape)}, {tuple(trg_desc.shape)}"
        )
    if ratio_rule not in RATIO_RULES:
        raise ValueError(f"mutual_matches: ratio_rule must be one of {RATIO_RULES}, got {ratio_rule!r}")
    n, m = src_desc.shape[0], trg_desc.shape[0]
    device = src_desc.device
    if n == 0 or m == 0:
        empty = torch.empty(0, dtype=torch.long, device=device)
        return MutualMatches(empty, empty.clone(), 0, 0, False)
    dtype = _work_dtype(src_desc.dtype)
    a = F.normalize(src_desc.to(dtype), dim=1, eps=1e-8)
    b = F.normalize(trg_desc.to(dtype), dim=1, eps=1e-8)

    found = nearest_neighbours(a, b, top=2, chunk_size=chunk_size)
    mutual = found.mutual
    if m < 2:
        ratio_ok = torch.ones_like(mutual)
    else:
        best1, best2 = found.row_scores.unbind(dim=1)
        if ratio_rule == "released":
            ratio_ok = best1 >= ratio * (best2 + 1e-8)
        else:  # Lowe on cosine distances: the best must be clearly closer than the second best
            ratio_ok = (1 - best1) <= ratio * (1 - best2)
    keep = mutual & ratio_ok
    num_mutual, num_ratio_kept = int(mutual.sum()), int(keep.sum())
    used_fallback = num_ratio_kept < min_matches
    if used_fallback:
        keep = mutual
    rows = torch.arange(n, device=device)
    return MutualMatches(rows[keep], found.row_index[keep], num_mutual, num_ratio_kept, used_fallback)


def grid_mutual_matches(
    src_features: torch.Tensor,
    trg_features: torch.Tensor,
    src_mask: torch.Tensor,
    trg_mask: torch.Tensor,
    ratio: float = 0.9,
    ratio_rule: str = "released",
    chunk_size: int = 4096,
    min_matches: int = 3,
) -> tuple[torch.Tensor, torch.Tensor, MutualMatches]:
    """Mutual matches between the masked cells of two ``(C, h, w)`` maps -> source and target cells ``(n, 2)``.

    Cells are enumerated in raster order (row by row), as ``torch.nonzero`` lists them.
    """
    if src_features.ndim != 3 or trg_features.shape != src_features.shape:
        raise ValueError(
            f"grid_mutual_matches: two (C, h, w) maps of equal shape expected, "
            f"got {tuple(src_features.shape)}, {tuple(trg_features.shape)}"
        )
    if src_mask.shape != src_features.shape[1:] or trg_mask.shape != src_features.shape[1:]:
        raise ValueError(
            f"grid_mutual_matches: masks must be (h, w) = {tuple(src_features.shape[1:])}, "
            f"got {tuple(src_mask.shape)}, {tuple(trg_mask.shape)}"
        )
    src_y, src_x = torch.nonzero(src_mask, as_tuple=True)
    trg_y, trg_x = torch.nonzero(trg_mask, as_tuple=True)
    matches = mutual_matches(
        src_features[:, src_y, src_x].T, trg_features[:, trg_y, trg_x].T, ratio, ratio_rule, chunk_size, min_matches
    )
    dtype = _work_dtype(src_features.dtype)
    src_cells = torch.stack((src_x[matches.src_index], src_y[matches.src_index]), dim=1).to(dtype)
    trg_cells = torch.stack((trg_x[matches.trg_index], trg_y[matches.trg_index]), dim=1).to(dtype)
    return src_cells, trg_cells, matches


def grid_nearest_matches(
    src_features: torch.Tensor,
    trg_features: torch.Tensor,
    src_mask: torch.Tensor,
    trg_mask: torch.Tensor,
    chunk_size: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw semantic flow: EVERY masked source cell and its nearest masked target cell -> cells ``(n, 2)``.

    Cosine similarity, ``NN_{s->t}`` of the paper's Eq. 10 without the mutual check (Eq. 11) or a ratio
    test; the first target cell wins ties (``argmax``). Source cells in raster order.
    """
    if src_features.ndim != 3 or trg_features.shape != src_features.shape:
        raise ValueError(
            f"grid_nearest_matches: two (C, h, w) maps of equal shape expected, "
            f"got {tuple(src_features.shape)}, {tuple(trg_features.shape)}"
        )
    dtype = _work_dtype(src_features.dtype)
    src_y, src_x = torch.nonzero(src_mask, as_tuple=True)
    trg_y, trg_x = torch.nonzero(trg_mask, as_tuple=True)
    if src_y.numel() == 0 or trg_y.numel() == 0:
        empty = torch.empty(0, 2, dtype=dtype, device=src_features.device)
        return empty, empty.clone()
    a = F.normalize(src_features[:, src_y, src_x].T.to(dtype), dim=1, eps=1e-8)
    b = F.normalize(trg_features[:, trg_y, trg_x].T.to(dtype), dim=1, eps=1e-8)
    nearest = nearest_neighbours(a, b, chunk_size=chunk_size).row_index
    src_cells = torch.stack((src_x, src_y), dim=1).to(dtype)
    trg_cells = torch.stack((trg_x[nearest], trg_y[nearest]), dim=1).to(dtype)
    return src_cells, trg_cells


def cells_to_canvas_pixels(cells: torch.Tensor, grid_wh: Size, image_wh: Size) -> torch.Tensor:
    """Cell ``(j, i)`` -> the integer canvas pixel ``round(j W / w), round(i H / h)``, clamped into the canvas.

    The inverse of the ``"marco"`` rule ``c = x w / W`` that maps mined source pixels back to cells in the
    loss, so cell matches (``pseudo_labels`` ``mutual`` / ``nearest``) become pixel pairs like the flow's.
    """
    (w, h), (big_w, big_h) = grid_wh, image_wh
    x = torch.round(cells[:, 0] * (big_w / w)).clamp(0, big_w - 1)
    y = torch.round(cells[:, 1] * (big_h / h)).clamp(0, big_h - 1)
    return torch.stack((x, y), dim=1)


# ---------------------------------------------------------------------------------------------------------
# Step 2: GT seeds, Delaunay triangulation, piecewise-affine dense flow.


def add_keypoint_seeds(
    src_cells: torch.Tensor,
    trg_cells: torch.Tensor,
    kp_src_cells: torch.Tensor,
    kp_trg_cells: torch.Tensor,
    src_mask: torch.Tensor,
    trg_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Append the GT keypoint pairs (in cells) whose rounded cells lie inside both grid masks.

    As released: only when there are at least 2 keypoint pairs; membership uses ``round`` (half to even) and
    clamping into the grid, the appended coordinates are the unrounded ones. Returns the seeds and the count.
    """
    if kp_src_cells.shape != kp_trg_cells.shape or kp_src_cells.ndim != 2 or kp_src_cells.shape[-1] != 2:
        raise ValueError(
            f"add_keypoint_seeds: keypoints must be two (K, 2) tensors, "
            f"got {tuple(kp_src_cells.shape)}, {tuple(kp_trg_cells.shape)}"
        )
    if kp_src_cells.shape[0] < 2:
        return src_cells, trg_cells, 0
    h, w = src_mask.shape

    def inside(mask: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        x = torch.round(cells[:, 0]).clamp(0, w - 1).long()
        y = torch.round(cells[:, 1]).clamp(0, h - 1).long()
        return mask[y, x]

    keep = inside(src_mask, kp_src_cells) & inside(trg_mask, kp_trg_cells)
    added = int(keep.sum())
    src = torch.cat((src_cells, kp_src_cells[keep].to(src_cells.dtype)))
    trg = torch.cat((trg_cells, kp_trg_cells[keep].to(trg_cells.dtype)))
    return src, trg, added


def triangle_inverses(corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``S^-1`` for every triangle, ``S`` holding the rows ``[x y 1]`` of its corners ``(T, 3, 2)``.

    Closed form ``adj(S) / det(S)`` (elementwise, equally fast on CPU and GPU; ``det`` is twice the signed
    area). Row ``r`` of ``S^-1`` holds the coefficients of ``x``, ``y`` and ``1`` in the barycentric coordinates,
    so ``[x y 1] @ S^-1`` are the barycentric coordinates of ``(x, y)``. Zero-area triangles are flagged
    ``degenerate`` and get the pseudo-inverse (the minimum-norm least-squares solution a ``lstsq`` gives).
    """
    x0, x1, x2 = corners[..., 0].unbind(-1)
    y0, y1, y2 = corners[..., 1].unbind(-1)
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)
    adjugate = torch.stack(
        (
            torch.stack((y1 - y2, y2 - y0, y0 - y1), dim=-1),
            torch.stack((x2 - x1, x0 - x2, x1 - x0), dim=-1),
            torch.stack((x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0), dim=-1),
        ),
        dim=1,
    )
    longest = torch.maximum(
        (corners[:, 1] - corners[:, 0]).square().sum(-1), (corners[:, 2] - corners[:, 0]).square().sum(-1)
    )
    degenerate = det.abs() <= 1e-9 * longest
    inverse = adjugate / torch.where(degenerate, torch.ones_like(det), det)[:, None, None]
    if degenerate.any():
        flat = corners[degenerate]
        inverse[degenerate] = torch.linalg.pinv(torch.cat((flat, torch.ones_like(flat[..., :1])), dim=-1))
    return inverse, degenerate


def triangle_affines(src_points: torch.Tensor, trg_points: torch.Tensor, simplices: torch.Tensor) -> torch.Tensor:
    """The affine map of every triangle at once: ``(T, 2, 3)`` with ``target = A[:, :2] @ p + A[:, 2]``.

    ``A^T = S^-1 Q`` for all triangles in one batched product (``triangle_inverses``), ``Q`` holding the
    three targets. Degenerate triangles get the minimum-norm least-squares map.
    """
    if simplices.ndim != 2 or simplices.shape[1] != 3:
        raise ValueError(f"triangle_affines: simplices must be (T, 3), got {tuple(simplices.shape)}")
    inverse, _ = triangle_inverses(src_points[simplices])
    targets = trg_points[simplices]  # (T, 3, 2)
    return (inverse[:, :, :, None] * targets[:, None, :, :]).sum(dim=2).transpose(1, 2)


def rasterise_triangles(
    corners: torch.Tensor, inverse: torch.Tensor, usable: torch.Tensor, mask: torch.Tensor,
    tol: float = 1e-8, budget: int = 1 << 22,
) -> torch.Tensor:  # fmt: skip
    """The triangle containing each cell of ``mask`` -> ``(h, w)`` long, ``-1`` where none (point location).

    Each triangle tests the integer cells of its bounding box with its barycentric coordinates
    (``[x y 1] @ S^-1 >= -tol``), in chunks of at most ``budget`` candidate cells. A cell on an edge shared by
    two triangles takes the larger triangle index (deterministic; both affines agree there). Triangles not
    ``usable`` (zero area) are skipped: their points lie on edges of their neighbours.
    """
    h, w = mask.shape
    lower = torch.ceil(corners.amin(dim=1) - 1e-6)
    upper = torch.floor(corners.amax(dim=1) + 1e-6)
    lower = torch.maximum(lower, torch.zeros_like(lower)).long()
    upper = torch.minimum(upper, torch.tensor([w - 1.0, h - 1.0], dtype=upper.dtype, device=upper.device)).long()
    size = (upper - lower + 1).clamp(min=0)
    count = size[:, 0] * size[:, 1] * usable.long()
    which = torch.full((h * w,), -1, dtype=torch.long, device=mask.device)
    ends = torch.cumsum(count, dim=0)
    first = 0
    while first < count.shape[0]:  # chunks of whole triangles with at most `budget` candidates (or one triangle)
        start = int(ends[first - 1]) if first else 0
        last = max(int(torch.searchsorted(ends, start + budget, right=True)), first + 1)
        tri = torch.repeat_interleave(torch.arange(first, last, device=mask.device), count[first:last])
        local = torch.arange(tri.numel(), device=mask.device) - (ends[tri] - count[tri] - start)
        cx = lower[tri, 0] + local % size[tri, 0]
        cy = lower[tri, 1] + torch.div(local, size[tri, 0], rounding_mode="floor")
        bary = cx[:, None] * inverse[tri, 0] + cy[:, None] * inverse[tri, 1] + inverse[tri, 2]
        inside = (bary >= -tol).all(dim=1) & mask[cy, cx]
        which.scatter_reduce_(0, (cy * w + cx)[inside], tri[inside], reduce="amax")
        first = last
    return which.reshape(h, w)


@dataclass(frozen=True)
class DenseFlow:
    """Flow on the feature grid: ``flow[y, x]`` is the displacement (cells) of cell ``(x, y)``."""

    flow: torch.Tensor  # (h, w, 2); zero outside the mask and outside the seeds' convex hull
    covered: torch.Tensor  # (h, w) bool: mask cells inside the hull (where the flow is defined)
    num_triangles: int


def piecewise_affine_flow(src_seeds: torch.Tensor, trg_seeds: torch.Tensor, mask: torch.Tensor) -> DenseFlow:
    """Dense flow of the mask cells from the seeds' Delaunay triangulation, one affine map per triangle.

    scipy triangulates the source seeds (the only step on the CPU); the affines, the point location of the
    mask cells (``rasterise_triangles``, equal to scipy's ``find_simplex`` up to the choice between the two
    triangles of a shared edge) and their application run batched in float64 on the seeds' device.
    Raises ``PairSkipped`` when the seeds cannot be triangulated (fewer than 3, or all collinear).
    """
    if src_seeds.shape != trg_seeds.shape or src_seeds.ndim != 2 or src_seeds.shape[1] != 2:
        raise ValueError(
            f"piecewise_affine_flow: seeds must be two (S, 2) tensors, "
            f"got {tuple(src_seeds.shape)}, {tuple(trg_seeds.shape)}"
        )
    device, out_dtype = src_seeds.device, src_seeds.dtype
    h, w = mask.shape
    try:
        triangulation = Delaunay(src_seeds.detach().to("cpu", torch.float64).numpy())
    except (QhullError, ValueError) as exc:
        raise PairSkipped(f"the {src_seeds.shape[0]} seeds cannot be triangulated ({type(exc).__name__})") from None
    simplices = torch.from_numpy(triangulation.simplices.astype(np.int64)).to(device)
    corners = src_seeds.to(torch.float64)[simplices]
    inverse, degenerate = triangle_inverses(corners)
    affines = (inverse[:, :, :, None] * trg_seeds.to(torch.float64)[simplices][:, None]).sum(dim=2).transpose(1, 2)

    which = rasterise_triangles(corners, inverse, ~degenerate, mask.bool())
    covered = which >= 0
    ys, xs = torch.nonzero(covered, as_tuple=True)
    affine = affines[which[ys, xs]]  # (P, 2, 3)
    x, y = xs.to(torch.float64)[:, None], ys.to(torch.float64)[:, None]
    warped = affine[:, :, 0] * x + affine[:, :, 1] * y + affine[:, :, 2]
    flow = torch.zeros(h, w, 2, dtype=out_dtype, device=device)
    flow[ys, xs] = (warped - torch.cat((x, y), dim=1)).to(out_dtype)
    return DenseFlow(flow, covered, int(simplices.shape[0]))


# ---------------------------------------------------------------------------------------------------------
# Step 3: flow at image resolution, its colour encoding, k-means + BIC merging.


def upsample_flow(flow_cells: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """``(h, w, 2)`` flow in cells -> ``(H, W, 2)`` flow in pixels (bilinear, ``align_corners=False``)."""
    if flow_cells.ndim != 3 or flow_cells.shape[-1] != 2:
        raise ValueError(f"upsample_flow: flow must be (h, w, 2), got {tuple(flow_cells.shape)}")
    h, w = flow_cells.shape[:2]
    big_h, big_w = image_hw
    up = F.interpolate(flow_cells.permute(2, 0, 1)[None], size=(big_h, big_w), mode="bilinear", align_corners=False)
    factor = torch.tensor([big_w / w, big_h / h], dtype=up.dtype, device=up.device)
    return up[0].permute(1, 2, 0) * factor


def quantile_linear(values: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) by two selections instead of a full sort."""
    position = q * (values.numel() - 1)
    low = math.floor(position)
    low_value = torch.kthvalue(values, low + 1).values
    if position == low:
        return low_value
    high_value = torch.kthvalue(values, low + 2).values
    return torch.lerp(low_value, high_value, position - low)


def flow_colour_features(flow_px: torch.Tensor, source_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The released clustering space: the RGB colour (in [0, 1], 8-bit levels) of the flow's HSV encoding.

    Hue = direction ``(atan2(v, u) + pi) / 2 pi``, saturation 1, value = magnitude over the 95th percentile of
    the image's non-zero magnitudes (all pixels, not only the mask's; clipped to 1). A pixel is valid where it
    is in ``source_mask`` (image resolution) and its 8-bit colour is not black. Returns
    ``(features (n, 3), valid (H, W))``, features in raster order of the valid pixels.
    """
    if flow_px.ndim != 3 or flow_px.shape[-1] != 2 or source_mask.shape != flow_px.shape[:2]:
        raise ValueError(
            f"flow_colour_features: flow (H, W, 2) and mask (H, W) expected, "
            f"got {tuple(flow_px.shape)}, {tuple(source_mask.shape)}"
        )
    u, v = flow_px[..., 0], flow_px[..., 1]
    magnitude = torch.sqrt(u * u + v * v)
    moving = magnitude[magnitude > 0]
    clip = quantile_linear(moving, 0.95) if moving.numel() else magnitude.new_tensor(1.0)
    ys, xs = torch.nonzero(source_mask, as_tuple=True)  # colours are needed inside the mask only
    u, v = u[ys, xs], v[ys, xs]
    value = torch.clamp(magnitude[ys, xs] / (clip + 1e-6), 0, 1)
    hue6 = (torch.atan2(v, u) + math.pi) / (2 * math.pi) * 6.0
    # HSV -> RGB with saturation 1: channel n is V * (1 - clamp(min(k, 4 - k), 0, 1)), k = (n + 6 h) mod 6
    channels = []
    for offset in (5.0, 3.0, 1.0):
        k = torch.remainder(offset + hue6, 6.0)
        channels.append(value * (1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)))
    levels = torch.floor(torch.clamp(torch.stack(channels, dim=-1) * 255, 0, 255))  # the uint8 encoding
    coloured = levels.amax(dim=-1) > 0
    valid = torch.zeros_like(source_mask, dtype=torch.bool)
    valid[ys[coloured], xs[coloured]] = True
    return levels[coloured] / 255.0, valid


def random_initial_centres(x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """``k`` distinct rows of ``x`` drawn uniformly with a CPU generator (device-independent)."""
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.full((1, x.shape[0]), 1.0 / x.shape[0])
    index = torch.multinomial(uniform, k, replacement=False, generator=generator)[0]
    return x[index.to(x.device)].clone()


def _nearest_centre(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre by ``|c|^2 - 2 x.c`` (one matmul); callers pass float64 for exactness."""
    centres = centres.to(x.dtype)
    return torch.addmm(centres.square().sum(1)[None], x, centres.T, alpha=-2).argmin(dim=1)


def kmeans(
    x: torch.Tensor,
    initial_centres: torch.Tensor,
    max_iter: int = 100,
    tol: float = 1e-4,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from given centres -> ``(labels (N,), centres (K, D))``, computed in float64.

    Stops when the mean Euclidean centre shift is below ``tol``; an empty cluster's centre becomes the zero
    vector (as in ``torch_kmeans``); the labels are the nearest final centres. ``weights`` (N,) count each
    row that many times (k-means of the distinct rows of a data set with their multiplicities).
    """
    k = initial_centres.shape[0]
    x64 = x.to(torch.float64)
    w64 = torch.ones(x.shape[0], dtype=torch.float64, device=x.device) if weights is None else weights.to(torch.float64)
    weighted = torch.cat((x64 * w64[:, None], w64[:, None]), dim=1)  # weighted sums and masses in one pass
    centres = initial_centres.to(torch.float64)
    for _ in range(max_iter):
        labels = _nearest_centre(x64, centres)
        totals = torch.zeros(k, weighted.shape[1], dtype=torch.float64, device=x.device).index_add_(0, labels, weighted)
        new_centres = totals[:, :-1] / totals[:, -1:].clamp(min=1e-12)
        shift = (new_centres - centres).norm(dim=1).mean()
        centres = new_centres
        if shift < tol:
            break
    return _nearest_centre(x64, centres), centres.to(x.dtype)


def _cluster_statistics(
    x: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted counts and squared errors (float64) of each cluster around the given centres."""
    k = centres.shape[0]
    w64 = weights.to(torch.float64)
    counts = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, labels, w64)
    squared = ((x - centres[labels]) ** 2).sum(dim=1).to(torch.float64) * w64
    sse = torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, labels, squared)
    return counts, sse


def _drop_empty(labels: torch.Tensor, centres: torch.Tensor, counts: torch.Tensor, sse: torch.Tensor):
    nonempty = counts > 0
    remap = torch.cumsum(nonempty.long(), dim=0) - 1
    return remap[labels], centres[nonempty], counts[nonempty], sse[nonempty]


def spherical_log_likelihood(counts: torch.Tensor, sse: torch.Tensor, dims: int) -> torch.Tensor:
    """Maximum log-likelihood of spherical Gaussian clusters, in the released form."""
    variance = torch.clamp(sse / (counts * dims + 1e-12), min=1e-12)
    return -0.5 * counts * (dims * torch.log(2 * math.pi * variance) + 1.0)


def bic_merge_gain(
    counts_a: torch.Tensor,
    centres_a: torch.Tensor,
    sse_a: torch.Tensor,
    counts_b: torch.Tensor,
    centres_b: torch.Tensor,
    sse_b: torch.Tensor,
    num_points: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """BIC gain of merging cluster pairs ``a[i] + b[i]`` -> ``(gain, counts, centre, sse)`` of the merged ones.

    ``gain = LL(merged) - LL(a) - LL(b) + (D + 2)/2 log N``: positive when the data do not justify two
    clusters. The merged centre is the count-weighted mean; its sse adds the between-centre scatter.
    """
    dims = centres_a.shape[-1]
    counts = counts_a + counts_b
    weights_a, weights_b = counts_a[:, None], counts_b[:, None]
    centres64_a, centres64_b = centres_a.to(torch.float64), centres_b.to(torch.float64)
    merged = (weights_a * centres64_a + weights_b * centres64_b) / counts.clamp(min=1e-12)[:, None]
    scatter = counts_a * (centres64_a - merged).square().sum(-1) + counts_b * (centres64_b - merged).square().sum(-1)
    sse = sse_a + sse_b + scatter
    gain = (
        spherical_log_likelihood(counts, sse, dims)
        - spherical_log_likelihood(counts_a, sse_a, dims)
        - spherical_log_likelihood(counts_b, sse_b, dims)
        + 0.5 * (dims + 2) * math.log(num_points)
    )
    return gain, counts, merged, sse


def merge_clusters_by_bic(
    points: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor, k_min: int, num_points: int | None = None
) -> torch.Tensor:
    """Greedy BIC merging of k-means centres -> the surviving centres ``(K', D)``, ``K' >= min(k_min, K)``.

    Each round looks at the pairs ``(i, nn(i))`` with ``nn(i) > i`` (nearest centre), merges the pair with
    the largest positive ``bic_merge_gain`` into its weighted mean, reassigns every point to the nearest
    remaining centre and drops empty clusters; it stops when no gain is positive or ``k_min`` remain.
    ``weights`` are the multiplicities of ``points``; ``num_points`` (the ``N`` of the penalty) defaults to
    their sum.
    """
    n = int(round(float(weights.sum()))) if num_points is None else num_points
    labels = _nearest_centre(points.to(torch.float64), centres)
    labels, centres, counts, sse = _drop_empty(labels, centres, *_cluster_statistics(points, weights, labels, centres))
    while centres.shape[0] > k_min:
        k = centres.shape[0]
        distances = torch.cdist(centres.to(torch.float64), centres.to(torch.float64)).square()
        distances.fill_diagonal_(math.inf)
        partner = distances.argmin(dim=1)
        gain, _, merged_centres, _ = bic_merge_gain(
            counts, centres, sse, counts[partner], centres[partner], sse[partner], n
        )
        candidate = partner > torch.arange(k, device=partner.device)  # each pair once, from its lower index
        gain = torch.where(candidate, gain, torch.full_like(gain, -math.inf))
        best = int(gain.argmax())
        if not gain[best] > 0:
            break
        centres = centres.clone()
        centres[best] = merged_centres[best].to(centres.dtype)
        centres = centres[torch.arange(k, device=centres.device) != partner[best]]
        labels = _nearest_centre(points.to(torch.float64), centres)  # reassign to the merged centres, recount
        labels, centres, counts, sse = _drop_empty(
            labels, centres, *_cluster_statistics(points, weights, labels, centres)
        )
    return centres


def cluster_flow(
    features: torch.Tensor,
    k_init: int = 7,
    k_min: int = 3,
    seed: int = 123,
    max_iter: int = 100,
    refine_max_iter: int = 50,
    tol: float = 1e-4,
) -> torch.Tensor:
    """k-means with ``k_init`` clusters, then greedy BIC merging down to ``k_min`` at least -> labels ``(N,)``.

    The work is done on the distinct rows with their multiplicities as weights (8-bit colours of a smooth
    flow repeat: ~119k pixels had ~55k distinct colours at 630 px); the assignments are those of all rows.
    Labels are contiguous ``0 .. K-1`` (some may end up empty after the final k-means, as released).
    Note: with the released criterion, merging the two halves of a compact (Gaussian) cluster of ``n``
    points costs about ``0.36 n`` in log-likelihood (one axis' variance grows by ``1 / (1 - 2/pi)``) while
    the penalty saved is ``2.5 log N``, so clusters of more than ~100 points are practically never merged:
    at training scale (~10^5 pixels) the 7 k-means clusters are kept as they are.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"cluster_flow: features must be (N >= 2, D), got {tuple(features.shape)}")
    n = features.shape[0]
    k0 = min(max(k_init, k_min), max(2, n - 1))  # k-means needs k < N
    initial = random_initial_centres(features, k0, seed)  # drawn from all N rows, as released
    points, inverse, multiplicity = torch.unique(features, dim=0, return_inverse=True, return_counts=True)
    weights = multiplicity.to(points.dtype)

    labels, centres = kmeans(points, initial, max_iter, tol, weights)
    nonempty = torch.bincount(labels, minlength=centres.shape[0]) > 0
    if int(nonempty.sum()) <= k_min:
        return (torch.cumsum(nonempty.long(), 0) - 1)[labels][inverse]
    centres = merge_clusters_by_bic(points, weights, centres, k_min, n)
    if centres.shape[0] > 1:
        labels, _ = kmeans(points, centres, refine_max_iter, tol, weights)
    else:
        labels = torch.zeros_like(labels)
    return labels[inverse]


# ---------------------------------------------------------------------------------------------------------
# Step 4: GT anchoring of the clusters, match collection, sampling.


def flow_destinations(flow_px: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Raster-ordered valid pixels ``(x, y)`` and their rounded, clamped destinations ``(xd, yd)`` (long)."""
    big_h, big_w = valid.shape
    ys, xs = torch.nonzero(valid, as_tuple=True)
    step = flow_px[ys, xs]
    xd = torch.round(xs.to(step.dtype) + step[:, 0]).clamp(0, big_w - 1).long()
    yd = torch.round(ys.to(step.dtype) + step[:, 1]).clamp(0, big_h - 1).long()
    return xs, ys, xd, yd


def _any_in_window(occupancy: torch.Tensor, points_px: torch.Tensor, radius: int) -> torch.Tensor:
    """``(K, H, W)`` occupancy, ``(P, 2)`` pixels -> ``(K, P)``: any occupied pixel in the point's square window.

    Equal to dilating each map with a ``(2r+1)^2`` box and reading it at the rounded, clamped point.
    """
    _, big_h, big_w = occupancy.shape
    x = torch.round(points_px[:, 0]).clamp(0, big_w - 1).long()
    y = torch.round(points_px[:, 1]).clamp(0, big_h - 1).long()
    offsets = torch.arange(-radius, radius + 1, device=occupancy.device)
    wy = (y[:, None, None] + offsets[None, :, None]).expand(-1, offsets.numel(), offsets.numel())
    wx = (x[:, None, None] + offsets[None, None, :]).expand(-1, offsets.numel(), offsets.numel())
    in_image = (wy >= 0) & (wy < big_h) & (wx >= 0) & (wx < big_w)
    hits = occupancy[:, wy.clamp(0, big_h - 1), wx.clamp(0, big_w - 1)] & in_image  # (K, P, r', r')
    return hits.flatten(2).any(dim=2)


def anchored_clusters(
    flow_px: torch.Tensor,
    valid: torch.Tensor,
    labels: torch.Tensor,
    kp_src_px: torch.Tensor,
    kp_trg_px: torch.Tensor,
    num_clusters: int | None = None,
    radius: int = 10,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which clusters carry the GT keypoints to their GT targets -> ``(keep (K,) bool, fraction (K,) float64)``.

    A cluster's source region is its pixels, its target region their destinations, both dilated by a
    ``(2 radius + 1)^2`` square. Among the GT source keypoints inside the dilated source region, the fraction
    whose GT target lies inside the dilated target region must reach ``threshold``; a cluster without any GT
    source keypoint is dropped (fraction NaN). All clusters are handled at once: only the windows around
    the keypoints are read, so no full-image dilation is computed.
    """
    if labels.shape[0] != int(valid.sum()):
        raise ValueError(f"anchored_clusters: {labels.shape[0]} labels for {int(valid.sum())} valid pixels")
    if num_clusters is None:
        num_clusters = int(labels.max()) + 1 if labels.numel() else 0
    k = num_clusters
    big_h, big_w = valid.shape
    xs, ys, xd, yd = flow_destinations(flow_px, valid)
    source_regions = torch.zeros(k, big_h, big_w, dtype=torch.bool, device=valid.device)
    target_regions = torch.zeros_like(source_regions)
    source_regions[labels, ys, xs] = True
    target_regions[labels, yd, xd] = True
    in_source = _any_in_window(source_regions, kp_src_px, radius)
    in_target = _any_in_window(target_regions, kp_trg_px, radius)
    n_source = in_source.sum(dim=1)
    n_both = (in_source & in_target).sum(dim=1)
    fraction = torch.where(n_source > 0, n_both.double() / n_source.clamp(min=1).double(), math.nan)
    keep = (n_source > 0) & (fraction >= threshold)
    return keep, fraction


def collect_matches(
    flow_px: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor, target_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels of the kept clusters whose destination is in ``target_mask`` -> source, target ``(n, 2)`` long.

    Ordered by cluster, then raster order (the released order).
    """
    xs, ys, xd, yd = flow_destinations(flow_px, valid)
    selected = keep[labels] & target_mask.bool()[yd, xd]
    index = torch.nonzero(selected, as_tuple=True)[0]
    index = index[torch.argsort(labels[index], stable=True)]
    return torch.stack((xs[index], ys[index]), dim=1), torch.stack((xd[index], yd[index]), dim=1)


def sample_matches(
    source: torch.Tensor,
    target: torch.Tensor,
    num_samples: int = 300,
    min_matches: int = 100,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``min(num_samples, n)`` pairs drawn without replacement, or ``None`` when ``n < min_matches``.

    The permutation is drawn on the CPU ``generator`` so a seed gives the same pairs on every device.
    """
    n = source.shape[0]
    if n < min_matches:
        return None
    index = torch.randperm(n, generator=generator)[: min(num_samples, n)].to(source.device)
    return source[index], target[index]


# ---------------------------------------------------------------------------------------------------------
# Step 5: the student's similarity maps and the loss.


def mined_similarity_maps(
    source_features: torch.Tensor, target_features: torch.Tensor, source_px: torch.Tensor, image_size: Size
) -> torch.Tensor:
    """Raw dot products of the student's source descriptors at ``source_px`` with the target map -> ``(n, h, w)``.

    Descriptors are sampled as MARCO's matcher does (``matcher.similarity_at_points``: cells ``x * w / W``,
    bilinear, ``align_corners=True``, border padding). ``image_size`` is the canvas ``(W, H)``.
    """
    if source_features.ndim != 3 or target_features.shape != source_features.shape:
        raise ValueError(
            f"mined_similarity_maps: two (C, h, w) maps expected, got {tuple(source_features.shape)}, "
            f"{tuple(target_features.shape)}"
        )
    points = source_px.to(source_features.dtype)
    return similarity_at_points(source_features[None], target_features[None], points[None], image_size)[0]


def flow_anchoring_loss(
    scores: torch.Tensor,
    target_px: torch.Tensor,
    image_size: Size,
    temperature: float = 10.0,
    weight: float = 1.0,
    num_points: int | None = None,
    quantize_targets: bool = True,
) -> torch.Tensor:
    """Dense self-distillation loss: ``weight * sum_i ||softargmax(scores_i) - target_i|| / num_points``.

    ``scores`` ``(..., h, w)`` are the student's similarity maps of the mined source points, ``target_px``
    ``(..., 2)`` the mined targets in canvas pixels, ``image_size`` the canvas ``(W, H)``. The soft-argmax is
    ``softmax(scores / temperature)`` over the whole grid times the cell coordinates; targets go to cells
    with ``x / (W - 1) * (w - 1)``, truncated toward zero when ``quantize_targets`` (released behaviour); both
    are normalised as ``2 c / (w - 1) - 1`` and compared with the Euclidean norm (not squared, as released).
    ``num_points`` defaults to the number of points given; pass the batch total when calling per pair.
    """
    if scores.ndim < 2 or target_px.shape[-1] != 2 or target_px.shape[:-1] != scores.shape[:-2]:
        raise ValueError(
            f"flow_anchoring_loss: scores (..., h, w) and targets (..., 2) with equal leading shape expected, "
            f"got {tuple(scores.shape)}, {tuple(target_px.shape)}"
        )
    h, w = scores.shape[-2:]
    big_w, big_h = image_size
    if min(h, w, big_h, big_w) < 2:
        raise ValueError(f"flow_anchoring_loss: grid {(w, h)} and image {image_size} must be at least 2 x 2")
    flat = scores.reshape(-1, h * w)
    count = flat.shape[0] if num_points is None else num_points
    if flat.shape[0] == 0 or count == 0:
        return scores.sum() * 0.0
    probabilities = torch.softmax(flat / temperature, dim=-1)
    predicted = probabilities @ cell_centres((w, h), scores.device, scores.dtype).reshape(-1, 2)
    target = target_px.reshape(-1, 2).to(scores.dtype)
    target = torch.stack((target[:, 0] / (big_w - 1) * (w - 1), target[:, 1] / (big_h - 1) * (h - 1)), dim=1)
    if quantize_targets:
        target = torch.trunc(target)
    span = torch.tensor([w - 1, h - 1], dtype=scores.dtype, device=scores.device)
    error = torch.linalg.vector_norm(2 * predicted / span - 2 * target / span, dim=-1)
    return weight * error.sum() / count


# ---------------------------------------------------------------------------------------------------------
# The chain for one pair.


@dataclass
class MinedMatches:
    """The pseudo-labels of one pair: integer-valued canvas pixels, and what every step kept.

    ``counts`` (in step order, only the steps reached): ``src_cells``, ``trg_cells`` (grid-mask cells),
    ``mutual``, ``ratio_kept``, ``ratio_fallback`` (0/1), ``seeds_mnn``, ``keypoint_seeds``, ``triangles``,
    ``flow_cells`` (mask cells inside the hull), ``valid_pixels``, ``clusters``, ``anchored_clusters``,
    ``matches``, ``sampled``. ``skipped`` says why a pair gave nothing (``None`` when it gave matches).
    ``timings_ms`` has per-step wall times when ``mine_matches(profile=True)``.
    """

    source: torch.Tensor  # (n, 2)
    target: torch.Tensor  # (n, 2)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def num_matches(self) -> int:
        return int(self.source.shape[0])


class _Clock:
    def __init__(self, enabled: bool, device: torch.device):
        self.enabled, self.device, self.times = enabled, device, {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if not self.enabled:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = (now - self._last) * 1000
        self._last = now


@torch.no_grad()
def mine_matches(
    teacher_features: torch.Tensor,
    masks: torch.Tensor,
    keypoints: torch.Tensor,
    config: FlowAnchoringConfig = FlowAnchoringConfig(),
    generator: torch.Generator | None = None,
    seed: int = 0,
    profile: bool = False,
) -> MinedMatches:
    """Mine the flow-anchored pseudo-labels of one pair (steps 0-4).

    Args:
        teacher_features: ``(2, C, h, w)`` teacher feature maps of the source and target canvas.
        masks: ``(2, H, W)`` object masks (bool or 0/1) of source and target at canvas resolution.
        keypoints: ``(2, K, 2)`` GT keypoints ``(x, y)`` in canvas pixels (only the real ones, no padding).
        generator: CPU generator for the final sampling; when ``None`` one is seeded with ``seed``.
        profile: record per-step wall times in ``timings_ms`` (synchronising CUDA).

    Returns ``MinedMatches`` with source / target canvas pixels ``(n, 2)`` (``100 <= n <= 300`` by default,
    or ``n = 0`` and ``skipped`` set), on the features' device, float32 (float64 for float64 features).
    """
    if teacher_features.ndim != 4 or teacher_features.shape[0] != 2:
        raise ValueError(f"mine_matches: teacher_features must be (2, C, h, w), got {tuple(teacher_features.shape)}")
    if masks.ndim != 3 or masks.shape[0] != 2:
        raise ValueError(f"mine_matches: masks must be (2, H, W) at canvas resolution, got {tuple(masks.shape)}")
    if keypoints.ndim != 3 or keypoints.shape[0] != 2 or keypoints.shape[-1] != 2:
        raise ValueError(f"mine_matches: keypoints must be (2, K, 2) canvas pixels, got {tuple(keypoints.shape)}")
    device = teacher_features.device
    dtype = _work_dtype(teacher_features.dtype)
    h, w = teacher_features.shape[-2:]
    big_h, big_w = masks.shape[-2:]
    masks = masks.to(device).bool()
    keypoints = keypoints.to(device, dtype)
    counts: dict[str, int] = {}
    clock = _Clock(profile, device)
    empty = torch.empty(0, 2, dtype=dtype, device=device)
    try:
        grid_masks = masks_to_feature_grid(masks, (h, w))
        counts["src_cells"], counts["trg_cells"] = int(grid_masks[0].sum()), int(grid_masks[1].sum())
        if counts["src_cells"] == 0 or counts["trg_cells"] == 0:
            raise PairSkipped("an object mask covers no feature cell")

        if config.pseudo_labels == "nearest":  # ablation: the raw NN flow of every masked source cell
            src_cells, trg_cells = grid_nearest_matches(
                teacher_features[0], teacher_features[1], grid_masks[0], grid_masks[1], config.chunk_size
            )
            counts["nearest"] = int(src_cells.shape[0])
            clock.lap("nearest_matches")
            source = cells_to_canvas_pixels(src_cells, (w, h), (big_w, big_h))
            target = cells_to_canvas_pixels(trg_cells, (w, h), (big_w, big_h))
            return _sampled(source, target, config, generator, seed, counts, clock, dtype)

        src_cells, trg_cells, mutual = grid_mutual_matches(
            teacher_features[0], teacher_features[1], grid_masks[0], grid_masks[1],
            config.ratio, config.ratio_rule, config.chunk_size, config.min_seed_matches,
        )  # fmt: skip
        counts.update(
            mutual=mutual.num_mutual, ratio_kept=mutual.num_ratio_kept,
            ratio_fallback=int(mutual.used_fallback), seeds_mnn=int(src_cells.shape[0]),
        )  # fmt: skip
        clock.lap("mutual_matches")
        if src_cells.shape[0] < config.min_seed_matches:
            raise PairSkipped(f"only {src_cells.shape[0]} mutual matches")

        if config.pseudo_labels == "mutual":  # ablation: the seeds themselves are the pseudo-labels
            source = cells_to_canvas_pixels(src_cells, (w, h), (big_w, big_h))
            target = cells_to_canvas_pixels(trg_cells, (w, h), (big_w, big_h))
            return _sampled(source, target, config, generator, seed, counts, clock, dtype)

        if config.keypoint_seeds:
            kp_cells = pixels_to_cells(keypoints, (big_w, big_h), (w, h), rule=CELL_RULE)
            src_seeds, trg_seeds, counts["keypoint_seeds"] = add_keypoint_seeds(
                src_cells, trg_cells, kp_cells[0], kp_cells[1], grid_masks[0], grid_masks[1]
            )
        else:  # ablation: the triangulation sees the mutual matches only
            src_seeds, trg_seeds, counts["keypoint_seeds"] = src_cells, trg_cells, 0
        dense = piecewise_affine_flow(src_seeds, trg_seeds, grid_masks[0])
        counts["triangles"], counts["flow_cells"] = dense.num_triangles, int(dense.covered.sum())
        clock.lap("dense_flow")

        flow_px = upsample_flow(dense.flow, (big_h, big_w))
        features, valid = flow_colour_features(flow_px, masks[0])
        counts["valid_pixels"] = int(valid.sum())
        if counts["valid_pixels"] < config.min_valid_pixels:
            raise PairSkipped(f"only {counts['valid_pixels']} pixels with flow")
        if not config.anchor_clusters:
            # ablation: clusters serve only the anchoring; kept all, they are every valid pixel, so none are
            # computed (one label, "clusters" and "anchored_clusters" are not counted)
            labels = torch.zeros(counts["valid_pixels"], dtype=torch.long, device=device)
            source, target = collect_matches(flow_px, valid, labels, torch.ones(1, dtype=torch.bool, device=device),
                                             masks[1])
            clock.lap("clustering")
            return _sampled(source, target, config, generator, seed, counts, clock, dtype)
        labels = cluster_flow(
            features, config.k_init, config.k_min, config.kmeans_seed,
            config.kmeans_max_iter, config.refine_max_iter, config.kmeans_tol,
        )  # fmt: skip
        num_clusters = int(labels.max()) + 1
        counts["clusters"] = int(torch.unique(labels).numel())
        clock.lap("clustering")

        keep, _ = anchored_clusters(
            flow_px, valid, labels, keypoints[0], keypoints[1], num_clusters, config.anchor_radius,
            config.anchor_threshold,
        )  # fmt: skip
        counts["anchored_clusters"] = int(keep.sum())
        source, target = collect_matches(flow_px, valid, labels, keep, masks[1])
        return _sampled(source, target, config, generator, seed, counts, clock, dtype)
    except PairSkipped as skip:
        clock.lap("until_skip")
        return MinedMatches(empty, empty.clone(), counts, str(skip), clock.times)


def _sampled(
    source: torch.Tensor, target: torch.Tensor, config: FlowAnchoringConfig, generator: torch.Generator | None,
    seed: int, counts: dict[str, int], clock: _Clock, dtype: torch.dtype,
) -> MinedMatches:  # fmt: skip
    """The last step of every variant: count the candidate matches, skip below ``min_matches``, sample."""
    counts["matches"] = int(source.shape[0])
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    sampled = sample_matches(source, target, config.num_samples, config.min_matches, generator)
    if sampled is None:
        kind = "anchored" if config.pseudo_labels == "flow" and config.anchor_clusters else config.pseudo_labels
        raise PairSkipped(f"only {source.shape[0]} {kind} matches (< {config.min_matches})")
    counts["sampled"] = int(sampled[0].shape[0])
    clock.lap("anchoring_and_sampling")
    return MinedMatches(sampled[0].to(dtype), sampled[1].to(dtype), counts, None, clock.times)
