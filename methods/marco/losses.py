"""Supervised losses for training MARCO and the baselines of its ablations.

``coarse_to_fine_ce``: MARCO's supervised loss exactly as released (``util/losses.py``
``GaussianCrossEntropyLoss`` called from ``engine.py`` ``train_one_epoch``). Per annotated keypoint:

1. softmax over the whole target grid of the RAW dot-product similarity map (no L2 normalisation) with
   temperature 10, ``exp(s / 10)``: the model config's ``softmax_temp: 10``, which the engine passes
   (``softmax_temp=model.softmax_temp``); the class's own default 0.04 is never used in training;
2. add 1e-6 to every probability (keeps the log finite);
3. the ground-truth point, in target-canvas pixels, is mapped to continuous cell coordinates with the
   align-corner rule ``c = x (w - 1) / (W - 1)`` (``scaling_coordinates`` default mode). The source
   descriptors are sampled with another rule, ``c = x w / W`` (cell rule ``marco``); the target rule is the
   inverse of the one inference maps predictions back with, so training and inference agree on targets;
4. the probability map is sampled bilinearly (``grid_sample``, ``align_corners=True``, border padding) at
   the 15 x 15 integer offsets ``-7..7`` around that point (the GT itself is generally between cells);
5. each sample is weighted by ``1 / (2 pi sigma^2) exp(-(dx^2 + dy^2) / (2 sigma^2))``: a Gaussian of the
   offset, normalised like a continuous density (its 15 x 15 values do NOT sum to 1), sigma in cells
   (the schedule in ``schedules.py``);
6. offsets whose sampling point is not STRICTLY inside ``(0, w - 1) x (0, h - 1)`` are dropped (a point
   exactly on the border row/column counts as outside);
7. loss of a keypoint = ``-sum(weight * log(prob))`` over the kept offsets; keypoints that are not valid
   (padding in the released collate, which fills the ``visibility_mask``) are left out entirely;
8. reduction, as ``engine.py`` does it: the sum over all pairs and valid keypoints divided by the number of
   valid keypoints in the batch (``loss_sup / batch['n_pts'].sum()``). ``reduction="sum"`` gives the
   loss class's own (undivided) return value.

Paper (Eq. 7-8) differs: the sum runs over the whole upsampled grid, the Gaussian is only "proportional
to" and the mean is per pair (1/K). The released window, weights and reduction are what is implemented.

``gaussian_smoothed_ce``: the unified benchmark's loss (Visual-AI/Semantic-Correspondence ``src/loss.py``
``GaussianCrossEntropyLoss``; ``train.py``: temperature 0.03, ``enable_l2_norm=True``): the same window
construction with a 7 x 7 window, sigma = 7 // 2 / 2 = 1.5 cells and no 1e-6; the similarity comes from
L2-normalised features (theirs: ``x / (||x|| + 1e-6)``); reduction: mean over each pair's keypoints, then
mean over the pairs of the batch. Their target rule is the same align-corner scaling.

``geosc_loss``: Geo-SC's supervised objective ("InfoNCE + l2", Junyi42/GeoAware-SC ``utils/utils_losses.py``
``calculate_loss`` with ``DENSE_OBJ=1``, ``model_utils/corr_map_model.py``), which MARCO's Table 8 trains
its architecture with. Per pair, on L2-normalised descriptors (``x / (||x|| + 1e-10)``):
- keypoint cells ``c = x * w / W`` (their ``num_patches / ANNO_SIZE``), truncated to integer cells;
- InfoNCE: the CLIP symmetric cross-entropy of ``exp(logit_scale) * D_src @ D_trg^T`` between the
  keypoints' cell descriptors (``logit_scale`` learnable, initialised at ``log(1 / 0.07)``);
- l2: for each source keypoint cell, soft-argmax (temperature 0.02) of its similarity with the whole
  target map; predicted flow = expected target cell - integer source cell; target flow = continuous target
  cell - continuous source cell (+ optional Gaussian noise, their ``GAUSSIAN_AUGMENT``: std = 0.1 x half
  the bbox threshold in cells); loss = mean Euclidean (not squared) error;
- pair loss = InfoNCE + l2; batch loss = mean over pairs (``batch_loss /= args.BZ``).
Not in this function: Geo-SC's pose-aware flip augmentation (``PAIR_AUGMENT``: losses on flipped
descriptors with keypoint permutations, weights 1 / 1 / 0.25, averaged), which needs flipped images and
per-category permutation tables, and the ``SELF_CONTRAST_WEIGHT`` term (0 by default). MARCO's paper does
not say which of these its Table 8 run used, nor the temperature and grid (Geo-SC's 60 x 60 at 840 px vs
MARCO's upsampled grid): those settings are left to the caller and unknown.

Agreement with the reference codes (random inputs, /tmp/verify_marco_losses.py, not part of the suite):
float64 relative differences below 1e-15 for ``coarse_to_fine_ce`` and ``gaussian_smoothed_ce`` (values and
gradients), float32 about 2e-7 for those and for ``geosc_loss``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from corrbench.errors import ConfigError
from corrbench.geometry import Size, cell_centres, pixels_to_cells
from corrbench.matching import sample_descriptors

from .schedules import RELEASED_SIGMA, SigmaSchedule

#: MARCO's softmax temperature (``configs/model/marco.yaml`` ``softmax_temp``), in training and inference.
MARCO_TEMPERATURE = 10.0
#: Side of the window of offsets the Gaussian target is evaluated on (``loss_kernel_size``).
MARCO_WINDOW = 15
#: Added to the probabilities before the log (``util/losses.py``).
MARCO_EPS = 1e-6
#: Rule mapping ground-truth pixels to target cells in the loss (``scaling_coordinates(..., 'align_corner')``).
MARCO_TARGET_CELL_RULE = "align_corners"

UNIFIED_TEMPERATURE = 0.03
UNIFIED_WINDOW = 7
UNIFIED_SIGMA = 1.5

GEOSC_TEMPERATURE = 0.02
GEOSC_LOGIT_SCALE_INIT = math.log(1 / 0.07)
GEOSC_FEATURE_EPS = 1e-10

REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------------------------------------
# The shared construction: a Gaussian-weighted cross-entropy on a window of offsets around each target.


def gaussian_window(window: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(window, window)`` weights ``1 / (2 pi sigma^2) exp(-(dx^2 + dy^2) / (2 sigma^2))``, ``dx, dy`` in cells.

    Rows are ``dy``, columns ``dx``, both from ``-(window // 2)`` to ``window // 2``. A window of 1 is the
    plain cross-entropy at the target (weight 1), as in both reference codes.
    """
    _check_window(window)
    if sigma <= 0:
        raise ConfigError(f"gaussian_window: sigma must be > 0, got {sigma}")
    if window == 1:
        return torch.ones(1, 1, device=device, dtype=dtype)
    offsets = _window_offsets(window, device, dtype)  # (K, K, 2)
    sq_radius = (offsets**2).sum(dim=-1)
    return torch.exp(-0.5 * sq_radius / sigma**2) / (2 * math.pi * sigma**2)


def _check_window(window: int) -> None:
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ConfigError(f"window must be an odd positive integer (offsets -w//2..w//2 in cells), got {window!r}")


def _window_offsets(window: int, device, dtype) -> torch.Tensor:
    """``(K, K, 2)`` integer ``(dx, dy)`` offsets; ``[i, j]`` is ``(j - K//2, i - K//2)``."""
    half = window // 2
    steps = torch.arange(-half, half + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack((dx, dy), dim=-1)


def window_cross_entropy(
    probabilities: torch.Tensor, target_cells: torch.Tensor, sigma: float, window: int
) -> torch.Tensor:
    """Per-map loss ``-sum_offsets g(offset) log p(target + offset)`` over offsets strictly inside the grid.

    ``probabilities`` ``(M, h, w)`` (already normalised, epsilon included), ``target_cells`` ``(M, 2)``
    continuous ``(x, y)`` cells. Returns ``(M,)``. Offsets whose sampling point lies on or beyond the grid
    border contribute nothing (the reference codes' strict ``0 < x < w - 1`` test).
    """
    if probabilities.ndim != 3 or target_cells.shape != (probabilities.shape[0], 2):
        raise ValueError(
            f"window_cross_entropy: probabilities (M, h, w) and target_cells (M, 2) expected, "
            f"got {tuple(probabilities.shape)} and {tuple(target_cells.shape)}"
        )
    m, h, w = probabilities.shape
    if m == 0:
        return probabilities.new_zeros(0)
    weights = gaussian_window(window, sigma, probabilities.device, probabilities.dtype)
    points = target_cells.to(probabilities.dtype)[:, None, None, :] + _window_offsets(
        window, probabilities.device, probabilities.dtype
    )  # (M, K, K, 2)
    inside = (points[..., 0] > 0) & (points[..., 0] < w - 1) & (points[..., 1] > 0) & (points[..., 1] < h - 1)
    sampled = sample_descriptors(
        probabilities[:, None], points.reshape(m, -1, 2), rule="align_corners", padding_mode="border"
    ).reshape(m, window, window)
    # Border padding keeps every sample positive, so the log is finite where `inside` drops it.
    terms = torch.where(inside, weights * torch.log(sampled), torch.zeros((), dtype=sampled.dtype, device=sampled.device))
    return -terms.sum(dim=(1, 2))


def _softmax_over_grid(similarity: torch.Tensor, temperature: float) -> torch.Tensor:
    """``exp((s - max) / T) / sum``: the reference codes' temperature softmax over the flattened grid."""
    flat = similarity.flatten(1)
    shifted = flat - flat.max(dim=1, keepdim=True).values
    exp = torch.exp(shifted / temperature)
    return (exp / exp.sum(dim=1, keepdim=True)).reshape(similarity.shape)


def _check_maps(similarity: torch.Tensor, target_cells: torch.Tensor, valid: torch.Tensor | None, name: str):
    if similarity.ndim != 4 or target_cells.ndim != 3 or target_cells.shape != (*similarity.shape[:2], 2):
        raise ValueError(
            f"{name}: similarity (B, N, h, w) and target_cells (B, N, 2) expected, "
            f"got {tuple(similarity.shape)} and {tuple(target_cells.shape)}"
        )
    if valid is None:
        return torch.ones(similarity.shape[:2], dtype=torch.bool, device=similarity.device)
    if valid.shape != similarity.shape[:2]:
        raise ValueError(f"{name}: valid must be (B, N) = {tuple(similarity.shape[:2])}, got {tuple(valid.shape)}")
    return valid.to(device=similarity.device, dtype=torch.bool)


def _per_keypoint(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    valid: torch.Tensor,
    sigma: float,
    temperature: float,
    window: int,
    eps: float,
) -> torch.Tensor:
    """``(B, N)`` losses; invalid keypoints are never computed (their maps get no gradient, NaN or not)."""
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    _check_window(window)
    out = similarity.new_zeros(similarity.shape[:2])
    index = valid.nonzero(as_tuple=True)
    if index[0].numel() == 0:
        return out + 0.0 * similarity.sum()  # keeps the graph connected for an all-invalid batch (grad 0)
    probabilities = _softmax_over_grid(similarity[index], temperature) + eps
    out = out.index_put(index, window_cross_entropy(probabilities, target_cells[index], sigma, window))
    return out


def _reduce(per_keypoint: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_keypoint
    total = per_keypoint.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------------------
# MARCO


def marco_target_cells(points: torch.Tensor, canvas_size: Size, grid_size: Size) -> torch.Tensor:
    """Ground-truth pixels on the target canvas ``(W, H)`` -> the loss's cells on a ``(w, h)`` grid."""
    return pixels_to_cells(points, canvas_size, grid_size, rule=MARCO_TARGET_CELL_RULE)


def coarse_to_fine_ce(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    sigma: float,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = MARCO_TEMPERATURE,
    window: int = MARCO_WINDOW,
    eps: float = MARCO_EPS,
    reduction: str = "mean",
) -> torch.Tensor:
    """MARCO's supervised loss (see the module docstring for every step).

    Args:
        similarity: ``(B, N, h, w)`` raw dot products of each source keypoint's descriptor with the target map.
        target_cells: ``(B, N, 2)`` ground truth as continuous ``(x, y)`` cells (``marco_target_cells``).
        sigma: Gaussian width in cells (``SigmaSchedule.for_iteration``).
        valid: ``(B, N)`` bool; False rows are ignored (padding). None: all valid.
        reduction: ``mean`` (per valid keypoint, as trained), ``sum``, or ``none`` (``(B, N)``, 0 where invalid).
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown reduction {reduction!r}", hint=f"use one of {', '.join(REDUCTIONS)}")
    valid = _check_maps(similarity, target_cells, valid, "coarse_to_fine_ce")
    per_keypoint = _per_keypoint(similarity, target_cells, valid, sigma, temperature, window, eps)
    return _reduce(per_keypoint, valid, reduction)


class CoarseToFineLoss:
    """``coarse_to_fine_ce`` with its sigma schedule and the released pixel-to-cell rule, for a training loop.

    ``loss(similarity, target_points, canvas_size, iteration, valid)``: ``target_points`` ``(B, N, 2)`` pixels
    on the target canvas of size ``(W, H)``; ``iteration`` the global 0-based optimisation step.
    """

    def __init__(
        self,
        schedule: SigmaSchedule = RELEASED_SIGMA,
        temperature: float = MARCO_TEMPERATURE,
        window: int = MARCO_WINDOW,
        eps: float = MARCO_EPS,
    ):
        _check_window(window)
        self.schedule, self.temperature, self.window, self.eps = schedule, temperature, window, eps

    def sigma(self, iteration: int) -> float:
        return self.schedule.for_iteration(iteration)

    def __call__(
        self,
        similarity: torch.Tensor,
        target_points: torch.Tensor,
        canvas_size: Size,
        iteration: int,
        valid: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        grid_size = (int(similarity.shape[-1]), int(similarity.shape[-2]))
        cells = marco_target_cells(target_points.to(similarity.dtype), canvas_size, grid_size)
        return coarse_to_fine_ce(
            similarity, cells, self.sigma(iteration), valid,
            temperature=self.temperature, window=self.window, eps=self.eps, reduction=reduction,
        )

    def __repr__(self) -> str:
        return f"CoarseToFineLoss(schedule={self.schedule}, temperature={self.temperature}, window={self.window})"


# ---------------------------------------------------------------------------------------------------------
# The unified benchmark's baseline


def gaussian_smoothed_ce(
    similarity: torch.Tensor,
    target_cells: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = UNIFIED_TEMPERATURE,
    window: int = UNIFIED_WINDOW,
    sigma: float = UNIFIED_SIGMA,
) -> torch.Tensor:
    """The unified benchmark's Gaussian-smoothed cross-entropy: mean over each pair's keypoints, then over pairs.

    ``similarity`` should be cosine similarities (L2-normalised features); ``target_cells`` use the
    align-corner rule (``marco_target_cells`` computes it too). No epsilon is added to the probabilities.
    A pair without valid keypoints adds 0 but still counts in the batch mean (the reference divides by
    the batch size; it would produce NaN for such a pair, which its datasets never contain).
    """
    valid = _check_maps(similarity, target_cells, valid, "gaussian_smoothed_ce")
    per_keypoint = _per_keypoint(similarity, target_cells, valid, sigma, temperature, window, eps=0.0)
    per_pair = per_keypoint.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    return per_pair.mean()


# ---------------------------------------------------------------------------------------------------------
# Geo-SC (InfoNCE + l2)


class GeoSCLoss(NamedTuple):
    total: torch.Tensor
    info_nce: torch.Tensor
    flow_epe: torch.Tensor


def _normalise_geosc(features: torch.Tensor) -> torch.Tensor:
    return features / (torch.linalg.norm(features, dim=0, keepdim=True) + GEOSC_FEATURE_EPS)


def geosc_loss(
    src_features: torch.Tensor,
    trg_features: torch.Tensor,
    src_cells: torch.Tensor,
    trg_cells: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
    *,
    temperature: float = GEOSC_TEMPERATURE,
    flow_noise_std: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> GeoSCLoss:
    """Geo-SC's InfoNCE + l2 objective on ``(B, C, h, w)`` feature maps (see the module docstring).

    Args:
        src_cells, trg_cells: ``(B, N, 2)`` continuous ``(x, y)`` cells with Geo-SC's rule ``c = x * w / W``
            (``corrbench.geometry.pixels_to_cells(..., rule="marco")``); integer cells are their truncation.
        logit_scale: the learnable LOG scale (Geo-SC: ``nn.Parameter(log(1 / 0.07))``), exponentiated here.
        valid: ``(B, N)`` bool: keypoints visible in both images.
        flow_noise_std: std (cells) of the Gaussian noise on the target flow, a float or ``(B,)``;
            Geo-SC: ``0.1 * bbox_threshold_in_cells / 2``. 0 disables it.
    Returns:
        ``GeoSCLoss(total, info_nce, flow_epe)``, each the mean over pairs.
    """
    if src_features.ndim != 4 or src_features.shape != trg_features.shape:
        raise ValueError(
            f"geosc_loss: two (B, C, h, w) feature maps of equal shape expected, "
            f"got {tuple(src_features.shape)} and {tuple(trg_features.shape)}"
        )
    b, c, h, w = src_features.shape
    for name, cells in (("src_cells", src_cells), ("trg_cells", trg_cells)):
        if cells.ndim != 3 or cells.shape[0] != b or cells.shape[-1] != 2:
            raise ValueError(f"geosc_loss: {name} must be (B, N, 2), got {tuple(cells.shape)}")
    if src_cells.shape != trg_cells.shape:
        raise ValueError(f"geosc_loss: src_cells {tuple(src_cells.shape)} and trg_cells {tuple(trg_cells.shape)} differ")
    valid = (
        torch.ones(src_cells.shape[:2], dtype=torch.bool, device=src_cells.device)
        if valid is None else valid.to(torch.bool)
    )
    if valid.shape != src_cells.shape[:2]:
        raise ValueError(f"geosc_loss: valid must be (B, N) = {tuple(src_cells.shape[:2])}, got {tuple(valid.shape)}")
    if temperature <= 0:
        raise ConfigError(f"geosc_loss: temperature must be > 0, got {temperature}")
    noise_std = torch.as_tensor(flow_noise_std, dtype=src_features.dtype).expand(b)
    scale = logit_scale.exp()
    grid = cell_centres((w, h), src_features.device, src_features.dtype).reshape(-1, 2)  # row-major (x, y)

    nce_terms, epe_terms = [], []
    for i in range(b):
        keep = valid[i].to(src_cells.device)
        src, trg = src_cells[i][keep], trg_cells[i][keep]
        if src.shape[0] == 0:  # nothing to learn from; counts as 0 in the batch mean
            zero = 0.0 * (src_features[i].sum() + trg_features[i].sum() + scale)
            nce_terms.append(zero)
            epe_terms.append(zero)
            continue
        src_int, trg_int = _integer_cells(src, (w, h), "src_cells"), _integer_cells(trg, (w, h), "trg_cells")
        src_map = _normalise_geosc(src_features[i]).reshape(c, -1)
        trg_map = _normalise_geosc(trg_features[i]).reshape(c, -1)
        src_desc = src_map[:, src_int[:, 1] * w + src_int[:, 0]].T  # (K, C)
        trg_desc = trg_map[:, trg_int[:, 1] * w + trg_int[:, 0]].T
        logits = scale * src_desc @ trg_desc.T
        labels = torch.arange(logits.shape[0], device=logits.device)
        nce_terms.append((F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2)

        weights = _softmax_over_grid(src_desc @ trg_map, temperature)  # (K, h*w)
        predicted_flow = weights @ grid - src_int.to(weights.dtype)
        target_flow = (trg - src).to(weights.dtype)
        if float(noise_std[i]) > 0:
            noise = torch.randn(target_flow.shape, generator=generator, dtype=target_flow.dtype)
            target_flow = target_flow + noise.to(target_flow.device) * noise_std[i].to(target_flow.device)
        epe_terms.append(torch.linalg.norm(predicted_flow - target_flow, dim=-1).mean())

    info_nce, flow_epe = torch.stack(nce_terms).mean(), torch.stack(epe_terms).mean()
    return GeoSCLoss(info_nce + flow_epe, info_nce, flow_epe)


def _integer_cells(cells: torch.Tensor, grid_size: Size, name: str) -> torch.Tensor:
    """Truncate to integer cells as Geo-SC's ``astype(np.int32)``; outside the grid is an error, not a wrap."""
    integer = torch.trunc(cells.detach()).long()
    w, h = grid_size
    outside = (integer[:, 0] < 0) | (integer[:, 0] >= w) | (integer[:, 1] < 0) | (integer[:, 1] >= h)
    if bool(outside.any()):
        raise ValueError(
            f"geosc_loss: {name} {cells[outside][:3].tolist()} fall outside the {w} x {h} grid; "
            "clip the keypoints to the canvas before mapping them to cells"
        )
    return integer
