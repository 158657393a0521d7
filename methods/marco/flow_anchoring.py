"""MARCO's dense self-distillation by flow anchoring: the pseudo-label mining chain of one pair, and its loss.

Per training pair, the EMA teacher's upsampled features give pseudo-correspondences that densify the sparse
ground truth (paper Sec. 3.3, Algorithm 1; released code ``engine.mine_dense_matches`` + ``util/flow.py``).
``mine_matches`` chains the steps, each in its own module, and returns the mined pairs plus per-step counts:

0-1. ``mining``: masks on the feature grid; mutual nearest neighbours of the masked cells (cosine, one chunked
     pass of ``corrbench.similarity.nearest_neighbours``) with the released ratio test and its fallback.
2.   ``flow``: GT keypoint pairs join the seeds; Delaunay triangulation of the source seeds; piecewise-affine
     flow of every mask cell inside the hull; upsampled to the canvas.
3.   ``clustering``: the flow's HSV colour encoding, clustered by k-means (k = 7, seeded) and greedy BIC
     merging (min 3).
4.   ``anchoring``: clusters whose flow carries the GT source keypoints to the GT target keypoints survive;
     their pixels whose destination is inside the target mask are the matches; then (``mining.sample_matches``)
     pairs with < 100 are skipped and 300 are sampled (seeded).
5.   ``flow_anchoring_loss`` (here): soft-argmax of the student's similarity map per mined source point,
     Euclidean distance to the mined target in [-1, 1] coordinates, summed and divided by the number of mined
     points; ``mined_similarity_maps`` builds the student's maps exactly as MARCO samples descriptors.

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

Released code versus paper (the released code is followed; the paper's value in brackets; details in the
step modules' docstrings):

- ratio test: the released rule on similarities practically never rejects a mutual match (``mining``)
  [paper: no ratio test, plain MNN].
- GT seeds: only when the pair has at least 2 keypoint pairs and both rounded cells are inside the grid masks
  (``flow``).
- clustering: the 3-D RGB colour of the flow's HSV encoding, k-means k = 7 then greedy BIC merging down to at
  least 3 clusters (``clustering``) [paper: flow vectors, k = 15 + BIC]. Pairs with < 300 coloured pixels are
  skipped. At training scale the released criterion practically never merges.
- anchoring: 50% of the GT source keypoints in a cluster's 21 x 21-dilated source region must land in its
  dilated destination region (``anchoring``) [paper: "contains a pair of annotated keypoints"].
- loss: Euclidean norm, weight 1, temperature 10 on raw dot products, no Gaussian suppression
  [paper: squared L2]. Matches are sampled to 300 per pair [paper: silent].

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

import time
from dataclasses import dataclass, field

import torch

from corrbench.geometry import Size, cell_centres, pixels_to_cells
from corrbench.runtime import synchronize

from .anchoring import anchored_clusters, collect_matches
from .clustering import cluster_flow, flow_colour_features
from .losses import MARCO_TEMPERATURE
from .flow import add_keypoint_seeds, piecewise_affine_flow, upsample_flow
from .matcher import CELL_RULE, similarity_at_points
from .mining import (
    RATIO_RULES,
    PairSkipped,
    cells_to_canvas_pixels,
    grid_mutual_matches,
    grid_nearest_matches,
    masks_to_feature_grid,
    sample_matches,
    work_dtype,
)

#: What becomes the pseudo-labels (``FlowAnchoringConfig.pseudo_labels``; see "Ablation variants" above).
PSEUDO_LABEL_SOURCES = ("flow", "mutual", "nearest")


@dataclass(frozen=True)
class FlowAnchoringConfig:
    """The mining settings; defaults are the released ``configs/train/train.yaml`` and ``util/flow.py``."""

    ratio: float = 0.9  # Lowe-style ratio of the row side (see ``mining`` for the released rule)
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
    """Per-step wall times of one ``mine_matches`` call (``profile=True``), synchronising the device."""

    def __init__(self, enabled: bool, device: torch.device):
        self.enabled, self.device, self.times = enabled, device, {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if not self.enabled:
            return
        synchronize(self.device)
        now = time.perf_counter()
        self.times[name] = (now - self._last) * 1000
        self._last = now


@dataclass(frozen=True)
class _Pair:
    """One pair as the steps see it: teacher maps, canvas and grid masks, GT keypoints in canvas pixels."""

    features: torch.Tensor  # (2, C, h, w)
    masks: torch.Tensor  # (2, H, W) bool
    grid_masks: torch.Tensor  # (2, h, w) bool
    keypoints: torch.Tensor  # (2, K, 2) canvas pixels, working dtype

    @property
    def grid(self) -> Size:
        return int(self.features.shape[-1]), int(self.features.shape[-2])

    @property
    def canvas(self) -> Size:
        return int(self.masks.shape[-1]), int(self.masks.shape[-2])

    def to_pixels(self, cells: torch.Tensor) -> torch.Tensor:
        return cells_to_canvas_pixels(cells, self.grid, self.canvas)


def _check_pair(teacher_features: torch.Tensor, masks: torch.Tensor, keypoints: torch.Tensor) -> None:
    if teacher_features.ndim != 4 or teacher_features.shape[0] != 2:
        raise ValueError(f"mine_matches: teacher_features must be (2, C, h, w), got {tuple(teacher_features.shape)}")
    if masks.ndim != 3 or masks.shape[0] != 2:
        raise ValueError(f"mine_matches: masks must be (2, H, W) at canvas resolution, got {tuple(masks.shape)}")
    if keypoints.ndim != 3 or keypoints.shape[0] != 2 or keypoints.shape[-1] != 2:
        raise ValueError(f"mine_matches: keypoints must be (2, K, 2) canvas pixels, got {tuple(keypoints.shape)}")


def _pair_on_grid(features: torch.Tensor, masks: torch.Tensor, keypoints: torch.Tensor, counts: dict) -> _Pair:
    """Step 0: the masks on the feature grid; a pair whose mask covers no cell is skipped."""
    device = features.device
    masks = masks.to(device).bool()
    grid_masks = masks_to_feature_grid(masks, tuple(features.shape[-2:]))
    counts["src_cells"], counts["trg_cells"] = int(grid_masks[0].sum()), int(grid_masks[1].sum())
    if counts["src_cells"] == 0 or counts["trg_cells"] == 0:
        raise PairSkipped("an object mask covers no feature cell")
    return _Pair(features, masks, grid_masks, keypoints.to(device, work_dtype(features.dtype)))


def _nearest_matches(pair: _Pair, config: FlowAnchoringConfig, counts: dict, clock: _Clock):
    """The ``nearest`` ablation: the raw NN flow of every masked source cell, in canvas pixels."""
    src_cells, trg_cells = grid_nearest_matches(pair.features[0], pair.features[1], pair.grid_masks[0],
                                                pair.grid_masks[1], config.chunk_size)
    counts["nearest"] = int(src_cells.shape[0])
    clock.lap("nearest_matches")
    return pair.to_pixels(src_cells), pair.to_pixels(trg_cells)


def _seed_matches(pair: _Pair, config: FlowAnchoringConfig, counts: dict, clock: _Clock):
    """Step 1: mutual matches with the released ratio test -> source and target cells ``(n, 2)``."""
    src_cells, trg_cells, mutual = grid_mutual_matches(
        pair.features[0], pair.features[1], pair.grid_masks[0], pair.grid_masks[1],
        config.ratio, config.ratio_rule, config.chunk_size, config.min_seed_matches,
    )  # fmt: skip
    counts.update(
        mutual=mutual.num_mutual, ratio_kept=mutual.num_ratio_kept,
        ratio_fallback=int(mutual.used_fallback), seeds_mnn=int(src_cells.shape[0]),
    )  # fmt: skip
    clock.lap("mutual_matches")
    if src_cells.shape[0] < config.min_seed_matches:
        raise PairSkipped(f"only {src_cells.shape[0]} mutual matches")
    return src_cells, trg_cells


def _canvas_flow(pair: _Pair, src_cells, trg_cells, config: FlowAnchoringConfig, counts: dict, clock: _Clock):
    """Step 2: seeds (+ GT keypoints) -> piecewise-affine flow on the grid -> flow in canvas pixels ``(H, W, 2)``."""
    if config.keypoint_seeds:
        kp_cells = pixels_to_cells(pair.keypoints, pair.canvas, pair.grid, rule=CELL_RULE)
        src_seeds, trg_seeds, counts["keypoint_seeds"] = add_keypoint_seeds(
            src_cells, trg_cells, kp_cells[0], kp_cells[1], pair.grid_masks[0], pair.grid_masks[1]
        )
    else:  # ablation: the triangulation sees the mutual matches only
        src_seeds, trg_seeds, counts["keypoint_seeds"] = src_cells, trg_cells, 0
    dense = piecewise_affine_flow(src_seeds, trg_seeds, pair.grid_masks[0])
    counts["triangles"], counts["flow_cells"] = dense.num_triangles, int(dense.covered.sum())
    clock.lap("dense_flow")
    return upsample_flow(dense.flow, tuple(pair.masks.shape[-2:]))


def _anchored_flow_matches(pair: _Pair, flow_px, config: FlowAnchoringConfig, counts: dict, clock: _Clock):
    """Steps 3-4: colour features, clusters, GT-anchored clusters -> their matches in canvas pixels."""
    features, valid = flow_colour_features(flow_px, pair.masks[0])
    counts["valid_pixels"] = int(valid.sum())
    if counts["valid_pixels"] < config.min_valid_pixels:
        raise PairSkipped(f"only {counts['valid_pixels']} pixels with flow")
    if not config.anchor_clusters:
        # ablation: clusters serve only the anchoring; kept all, they are every valid pixel, so none are
        # computed (one label, "clusters" and "anchored_clusters" are not counted)
        labels = torch.zeros(counts["valid_pixels"], dtype=torch.long, device=valid.device)
        everything = torch.ones(1, dtype=torch.bool, device=valid.device)
        matches = collect_matches(flow_px, valid, labels, everything, pair.masks[1])
        clock.lap("clustering")
        return matches
    labels = cluster_flow(
        features, config.k_init, config.k_min, config.kmeans_seed,
        config.kmeans_max_iter, config.refine_max_iter, config.kmeans_tol,
    )  # fmt: skip
    counts["clusters"] = int(torch.unique(labels).numel())
    clock.lap("clustering")
    keep, _ = anchored_clusters(
        flow_px, valid, labels, pair.keypoints[0], pair.keypoints[1], int(labels.max()) + 1, config.anchor_radius,
        config.anchor_threshold,
    )  # fmt: skip
    counts["anchored_clusters"] = int(keep.sum())
    return collect_matches(flow_px, valid, labels, keep, pair.masks[1])


def _candidate_matches(pair: _Pair, config: FlowAnchoringConfig, counts: dict, clock: _Clock):
    """The pseudo-label candidates of the configured variant, as source and target canvas pixels ``(n, 2)``."""
    if config.pseudo_labels == "nearest":
        return _nearest_matches(pair, config, counts, clock)
    src_cells, trg_cells = _seed_matches(pair, config, counts, clock)
    if config.pseudo_labels == "mutual":  # ablation: the seeds themselves are the pseudo-labels
        return pair.to_pixels(src_cells), pair.to_pixels(trg_cells)
    flow_px = _canvas_flow(pair, src_cells, trg_cells, config, counts, clock)
    return _anchored_flow_matches(pair, flow_px, config, counts, clock)


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
    _check_pair(teacher_features, masks, keypoints)
    dtype = work_dtype(teacher_features.dtype)
    counts: dict[str, int] = {}
    clock = _Clock(profile, teacher_features.device)
    try:
        pair = _pair_on_grid(teacher_features, masks, keypoints, counts)
        source, target = _candidate_matches(pair, config, counts, clock)
        return _sampled(source, target, config, generator, seed, counts, clock, dtype)
    except PairSkipped as skip:
        clock.lap("until_skip")
        empty = torch.empty(0, 2, dtype=dtype, device=teacher_features.device)
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
    temperature: float = MARCO_TEMPERATURE,
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
