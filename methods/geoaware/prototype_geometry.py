"""3D geometry under Jamais Vu's category-prototype objective: similarity alignment, point sampling, neighbourhoods.

Each function does what the authors' released code does (VICO-UoE/JamaisVu, ``utils/utils_geoware.py``,
``utils/utils_losses.py`` and ``model_utils/category_prototype.py`` at d236e73), quirks included, because those
quirks produced their numbers; each quirk is named where it happens. ``tests/test_jamaisvu_objective.py``
compares every function with the authors' on crafted inputs (golden tensors in ``tests/data``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_ALIGNMENT_SCALE = 1.0  # the paper's s >= 1: objects may not shrink onto the prototype (no collapse to s = 0)
SMOOTH_L1_BETA = 1e-3  # the paper writes an L1 norm; the code takes smooth L1 of distances with this beta
SCALE_EPS = 1e-5  # added to the normalising scale of every alignment residual
DEPTH_OUTLIER_MADS = 5  # object pixels further than 5 median absolute deviations from the median depth are dropped


def similarity_transform(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                         min_scale: float | None = MIN_ALIGNMENT_SCALE) -> torch.Tensor:
    """Kabsch-Umeyama: the (B, 4, 4) row-vector transform ``[x, 1] @ RT`` taking ``source`` onto ``target``.

    ``source`` and ``target`` are (B, N, 3). The scale is clipped from below at ``min_scale``. A masked
    centroid is the masked mean plus 1e-6, as in the authors' ``weighted_mean`` (a shift the centring cancels
    except in the translation). A transform with NaNs becomes the identity. Computed without gradient by every
    caller (the authors run it under ``torch.no_grad``).
    """
    if mask is None:
        source_mean = source.mean(dim=-2, keepdim=True)
        target_mean = target.mean(dim=-2, keepdim=True)
        source_c, target_c = source - source_mean, target - target_mean
    else:
        source_mean, target_mean = _masked_mean(source, mask), _masked_mean(target, mask)
        source_c, target_c = (source - source_mean) * mask, (target - target_mean) * mask
    u, singular, vt = torch.linalg.svd(source_c.transpose(-2, -1) @ target_c)
    corrector = torch.eye(3, device=source.device).repeat(source.size(0), 1, 1)
    corrector[..., -1, -1] = torch.linalg.det(u @ vt)  # a reflection is turned into a rotation
    rotation = u @ corrector @ vt
    trace = (torch.diagonal(corrector, dim1=-2, dim2=-1) * singular).sum(-1)
    scale = (trace / torch.clamp((source_c * source_c).sum((-1, -2)), 1e-5)).view(-1, 1, 1)
    if min_scale is not None:
        scale = scale.clip(min=min_scale)
    translation = target_mean - scale * source_mean @ rotation
    top = torch.cat((scale * rotation, translation), dim=-2)  # (B, 4, 3)
    transform = torch.cat([top, torch.zeros_like(top[..., 0:1])], dim=-1)
    transform[..., 3, 3] = 1
    failed = transform.isnan().any(dim=-2, keepdim=True).any(dim=-1, keepdim=True)
    identity = torch.eye(4, device=transform.device).expand_as(transform)
    return torch.where(failed, identity, transform)


def _masked_mean(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = torch.sum(mask, dim=-2, keepdim=True)
    if torch.all(weight == 0):
        return points.mean(dim=-2, keepdim=True)
    return torch.sum(points * mask, dim=-2, keepdim=True) / weight + 1e-6


def apply_transform(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Points (..., 3) moved by a (..., 4, 4) row-vector transform from ``similarity_transform``."""
    homogeneous = torch.cat((points, torch.ones_like(points[..., 0:1])), dim=-1)
    return (homogeneous @ transform)[..., :3]


def smooth_distance(x: torch.Tensor, y: torch.Tensor, beta: float = SMOOTH_L1_BETA) -> torch.Tensor:
    """Mean smooth-L1 of the Euclidean distances between ``x`` and ``y`` (last dimension)."""
    distances = torch.norm(x - y, dim=-1)
    return F.smooth_l1_loss(distances, torch.zeros_like(distances), beta=beta)


def depth_inlier_mask(mask: torch.Tensor, depth: torch.Tensor, n_mads: float = DEPTH_OUTLIER_MADS) -> torch.Tensor:
    """``mask`` (B, N, 1) without pixels whose depth is an outlier of the object's (median absolute deviation).

    Guards against masks that spill onto the background. An image whose filtered mask would be empty
    keeps its mask as it is (so does one whose depths all agree: a zero deviation rejects everything).
    """
    inliers = []
    for image_mask, image_depth in zip(mask, depth):
        object_depths = torch.masked_select(image_depth, image_mask)
        median = object_depths.nanmedian()
        deviation = (object_depths - median).abs().nanmedian()
        inliers.append((image_depth - median).abs() < n_mads * deviation)
    kept = mask & torch.stack(inliers, dim=0)
    any_left = kept.any(dim=-1, keepdim=True).any(dim=-2, keepdim=True)
    return torch.where(any_left, kept, mask)


def farthest_point_sample(points: torch.Tensor, mask: torch.Tensor, n_samples: int,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point sampling of the masked points: ((B, n, 3) points, (B, n) indices).

    The first point is drawn uniformly among the masked ones (``generator``); the rest are deterministic.
    An empty mask samples from point 0 (the authors' guard). With fewer masked points than ``n_samples``,
    the surplus samples repeat already chosen points (the first index of the maximal remaining distance).
    The authors run over every pixel with -inf for the unmasked ones; running over the masked ones only picks
    the same points (the order of the candidates is kept, so ties resolve alike) in a fraction of the time.
    """
    batch, n_points, _ = points.shape
    weights = mask.float().view(batch, n_points)
    weights[:, 0] = weights[:, 0] + (~weights.bool().any(dim=-1)).int()
    first = torch.multinomial(weights, 1, generator=generator)  # (B, 1), drawn for the whole batch as theirs
    indices = torch.stack([_farthest_points(points[b], torch.nonzero(weights[b]).view(-1), int(first[b]), n_samples)
                           for b in range(batch)])
    return torch.gather(points, 1, indices.unsqueeze(-1).expand(-1, -1, 3)), indices


def _farthest_points(points: torch.Tensor, candidates: torch.Tensor, first: int, n_samples: int) -> torch.Tensor:
    """Indices into ``points`` (N, 3) of ``n_samples`` farthest points among ``candidates``, from ``first``."""
    pool = points[candidates]
    current = points[first]
    distances = torch.norm(pool - current, dim=-1)
    picked = [first]
    for _ in range(1, n_samples):
        farthest = int(distances.argmax())
        distances = torch.min(distances, torch.norm(pool - pool[farthest], dim=-1))
        picked.append(int(candidates[farthest]))
    return torch.tensor(picked, dtype=torch.long, device=points.device)


def pseudo_geodesic_neighbours(points: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, k) indices of each point's neighbourhood grown one nearest point at a time (the point itself first).

    The paper's Algorithm 1 grows the set of point i by the point closest to that set. The released code
    updates the distance table with the transposed term: row i's entry j becomes min(d(i, j), d(i, c_j)),
    where c_j is the point just added to *j*'s set, not to i's. This follows the code.
    """
    batch, n_points, _ = points.shape
    indices = [torch.arange(n_points, device=points.device).view(1, n_points, 1).expand(batch, n_points, 1)]
    distances = torch.cdist(points, points)
    taken = torch.eye(n_points, device=points.device).unsqueeze(0).expand(batch, -1, -1).bool()
    for _ in range(1, k):
        nearest = distances.where(~taken, float("inf")).argmin(dim=2, keepdim=True)
        taken = taken.scatter(-1, nearest, True)
        added = torch.gather(points, 1, nearest.expand(-1, -1, 3))
        distances = torch.min(distances, torch.cdist(points, added))
        indices.append(nearest)
    return torch.cat(indices, dim=2)


def nearest_neighbours(points: torch.Tensor, k: int) -> torch.Tensor:
    """(B, N, k) indices of each point's k nearest points (itself included), by Euclidean distance."""
    return torch.cdist(points, points).topk(k=k, largest=False, dim=-1)[1]


def local_shape_loss(moving: torch.Tensor, fixed: torch.Tensor, neighbourhoods: torch.Tensor) -> torch.Tensor:
    """How far each neighbourhood of ``fixed``, aligned by a similarity, is from the same one of ``moving``.

    ``moving`` and ``fixed`` are (B, N, 3) point sets in correspondence; ``neighbourhoods`` (B, N, k) indices.
    Offsets from each centre point are aligned ``fixed`` -> ``moving`` (scale >= 1, no gradient), both are
    divided by the larger of their (detached) radii, and the smooth-L1 distance is averaged.
    """
    batch, n_points, _ = moving.shape
    k = neighbourhoods.size(-1)
    index = neighbourhoods.unsqueeze(-1).expand(-1, -1, -1, 3)
    moving_offsets = torch.gather(moving.unsqueeze(-3).expand(-1, n_points, -1, -1), -2, index) - moving.unsqueeze(-2)
    fixed_offsets = torch.gather(fixed.unsqueeze(-3).expand(-1, n_points, -1, -1), -2, index) - fixed.unsqueeze(-2)
    flat_moving, flat_fixed = moving_offsets.view(-1, k, 3), fixed_offsets.view(-1, k, 3)
    with torch.no_grad():
        transform = similarity_transform(flat_fixed, flat_moving)
    aligned_fixed = apply_transform(transform, flat_fixed)
    moving_radius = moving_offsets.norm(dim=-1).max(dim=-1, keepdim=True)[0].view(batch * n_points, 1, 1)
    fixed_radius = aligned_fixed.norm(dim=-1).max(dim=-1, keepdim=True)[0].view(batch * n_points, 1, 1)
    scale = torch.maximum(moving_radius.expand(-1, k, 3).detach(), fixed_radius.expand(-1, k, 3).detach()) + SCALE_EPS
    return smooth_distance(flat_moving / scale, aligned_fixed / scale)
