"""Step 0-1 of MARCO's pseudo-label mining: masks on the feature grid, mutual nearest neighbours with the released
ratio test, the raw nearest-neighbour flow of the ``nearest`` ablation, and the final sampling.

Mutual matches are taken between the source and target cells inside the object masks, on cosine similarity of
L2-normalised teacher features, streamed in row chunks: ONE pass of ``corrbench.similarity.nearest_neighbours``
yields the row top-2 and the running column maximum (the released ``util/flow.compute_dense_flow`` makes two
passes). The released ratio test keeps a mutual match if ``best1 >= 0.9 * (best2 + 1e-8)`` on SIMILARITIES of
the row (source) side, which can only fail when BOTH best similarities are negative and close
(``best2 <= best1 < 0.9 best2``; for ``best2 >= 9e-8`` it always holds because ``best1 >= best2``): ambiguous
positive matches are NOT rejected (``tools/golden/golden_cases.py`` ``RATIO_CASES`` builds the rare case where
it decides). If fewer than 3 matches survive, the code falls back to the plain mutual matches [paper: no ratio
test, plain MNN].
``ratio_rule="cosine_distance"`` offers Lowe's test on cosine distances ``1 - s`` for ablations.

masks -> grid: ``F.interpolate(mask, (h, w), bilinear, align_corners=True) > 0`` (released ``engine.py``).
Cell matches become canvas pixels by ``cells_to_canvas_pixels`` (``round(c W / w)``, the inverse of the loss's
source rule ``x w / W``). Every function runs on the device of its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from corrbench.geometry import Size
from corrbench.similarity import nearest_neighbours

RATIO_RULES = ("released", "cosine_distance")


class PairSkipped(Exception):
    """A pair yields no pseudo-labels (the released code silently skips it); the message says why."""


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 inputs stay float64; everything else (float32, half, bfloat16) is processed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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


@dataclass(frozen=True)
class MutualMatches:
    """Index pairs into the source / target descriptor lists, and what each filter kept."""

    src_index: torch.Tensor  # (n,) long
    trg_index: torch.Tensor  # (n,) long
    num_mutual: int  # mutual nearest neighbours
    num_ratio_kept: int  # mutual AND passing the ratio test
    used_fallback: bool  # fewer than min_matches passed both, so the plain mutual matches were used


def _unit_rows(descriptors: torch.Tensor) -> torch.Tensor:
    """Rows L2-normalised in the working dtype (released ``eps=1e-8``): dot products become cosines."""
    return F.normalize(descriptors.to(work_dtype(descriptors.dtype)), dim=1, eps=1e-8)


def ratio_test(best1: torch.Tensor, best2: torch.Tensor, ratio: float, rule: str) -> torch.Tensor:
    """Which rows pass the ratio test on their best two cosine similarities (see the module docstring)."""
    if rule == "released":
        return best1 >= ratio * (best2 + 1e-8)
    return (1 - best1) <= ratio * (1 - best2)  # Lowe on cosine distances: the best clearly closer than the second


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
    if n == 0 or m == 0:
        empty = torch.empty(0, dtype=torch.long, device=src_desc.device)
        return MutualMatches(empty, empty.clone(), 0, 0, False)
    found = nearest_neighbours(_unit_rows(src_desc), _unit_rows(trg_desc), top=2, chunk_size=chunk_size)
    mutual = found.mutual
    if m < 2:  # no second best: the released code lets every row pass
        keep = mutual
    else:
        keep = mutual & ratio_test(*found.row_scores.unbind(dim=1), ratio, ratio_rule)
    num_mutual, num_ratio_kept = int(mutual.sum()), int(keep.sum())
    used_fallback = num_ratio_kept < min_matches
    if used_fallback:
        keep = mutual
    rows = torch.arange(n, device=src_desc.device)
    return MutualMatches(rows[keep], found.row_index[keep], num_mutual, num_ratio_kept, used_fallback)


def _masked_cells(
    name: str, src_features: torch.Tensor, trg_features: torch.Tensor, src_mask: torch.Tensor, trg_mask: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The ``(y, x)`` indices of the masked cells of both maps in raster order, after checking the shapes."""
    if src_features.ndim != 3 or trg_features.shape != src_features.shape:
        raise ValueError(
            f"{name}: two (C, h, w) maps of equal shape expected, "
            f"got {tuple(src_features.shape)}, {tuple(trg_features.shape)}"
        )
    if src_mask.shape != src_features.shape[1:] or trg_mask.shape != src_features.shape[1:]:
        raise ValueError(
            f"{name}: masks must be (h, w) = {tuple(src_features.shape[1:])}, "
            f"got {tuple(src_mask.shape)}, {tuple(trg_mask.shape)}"
        )
    return torch.nonzero(src_mask, as_tuple=True), torch.nonzero(trg_mask, as_tuple=True)


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
    (src_y, src_x), (trg_y, trg_x) = _masked_cells("grid_mutual_matches", src_features, trg_features, src_mask,
                                                   trg_mask)
    matches = mutual_matches(
        src_features[:, src_y, src_x].T, trg_features[:, trg_y, trg_x].T, ratio, ratio_rule, chunk_size, min_matches
    )
    dtype = work_dtype(src_features.dtype)
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
    test; the first target cell wins ties (``argmax``). Source cells in raster order. Only the row side of the
    nearest-neighbour pass is computed (no mutual check needs the columns).
    """
    (src_y, src_x), (trg_y, trg_x) = _masked_cells("grid_nearest_matches", src_features, trg_features, src_mask,
                                                   trg_mask)
    dtype = work_dtype(src_features.dtype)
    if src_y.numel() == 0 or trg_y.numel() == 0:
        empty = torch.empty(0, 2, dtype=dtype, device=src_features.device)
        return empty, empty.clone()
    a, b = _unit_rows(src_features[:, src_y, src_x].T), _unit_rows(trg_features[:, trg_y, trg_x].T)
    nearest = nearest_neighbours(a, b, chunk_size=chunk_size, columns=False).row_index
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


