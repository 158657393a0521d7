"""Step 2 of MARCO's pseudo-label mining: the dense flow of the source mask from sparse seed matches.

GT keypoint pairs that fall inside both grid masks join the mutual matches as seeds (``add_keypoint_seeds``);
scipy's Delaunay triangulation of the source seeds; ``triangle_affines`` solves every triangle's affine map at
once (closed-form 3 x 3 inverses); ``rasterise_triangles`` finds each mask cell's triangle by barycentric tests
over the triangles' bounding boxes (vectorised, on the device; scipy's ``find_simplex`` in the released
``util/flow.compute_dense_flow``), and every covered cell gets its triangle's affine flow. ``upsample_flow`` takes
the flow to image resolution: ``F.interpolate(bilinear, align_corners=False)`` to ``(H, W)``, scaled by
``W / w``, ``H / h`` (released ``util/flow.upsample_flow``).

GT seeds, as released: added only when the pair has at least 2 keypoint pairs (``keypoints.numel() >= 6``) and
both rounded, clamped cells are inside the grid masks; the unrounded cell coordinates are used. Everything runs
on the device of the inputs except scipy's triangulation, which sees only the seed coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay, QhullError

from .mining import PairSkipped


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
    return _affines(inverse, trg_points[simplices])


def _affines(inverse: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(T, 3, 3)`` inverses ``S^-1`` and ``(T, 3, 2)`` corner targets ``Q`` -> ``A = (S^-1 Q)^T`` ``(T, 2, 3)``."""
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
    affines = _affines(inverse, trg_seeds.to(torch.float64)[simplices])

    which = rasterise_triangles(corners, inverse, ~degenerate, mask.bool())
    covered = which >= 0
    ys, xs = torch.nonzero(covered, as_tuple=True)
    affine = affines[which[ys, xs]]  # (P, 2, 3)
    x, y = xs.to(torch.float64)[:, None], ys.to(torch.float64)[:, None]
    warped = affine[:, :, 0] * x + affine[:, :, 1] * y + affine[:, :, 2]
    flow = torch.zeros(h, w, 2, dtype=out_dtype, device=device)
    flow[ys, xs] = (warped - torch.cat((x, y), dim=1)).to(out_dtype)
    return DenseFlow(flow, covered, int(simplices.shape[0]))


def upsample_flow(flow_cells: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """``(h, w, 2)`` flow in cells -> ``(H, W, 2)`` flow in pixels (bilinear, ``align_corners=False``)."""
    if flow_cells.ndim != 3 or flow_cells.shape[-1] != 2:
        raise ValueError(f"upsample_flow: flow must be (h, w, 2), got {tuple(flow_cells.shape)}")
    h, w = flow_cells.shape[:2]
    big_h, big_w = image_hw
    up = F.interpolate(flow_cells.permute(2, 0, 1)[None], size=(big_h, big_w), mode="bilinear", align_corners=False)
    factor = torch.tensor([big_w / w, big_h / h], dtype=up.dtype, device=up.device)
    return up[0].permute(1, 2, 0) * factor
