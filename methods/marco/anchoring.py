"""Step 4 of MARCO's pseudo-label mining: keep the flow clusters that the GT keypoints anchor, collect their matches.

Released ``util/flow.filter_clusters_by_keypoints`` + ``collect_matches``. A pixel's destination is
``round(x + u), round(y + v)`` (half to even), clamped into the image. A cluster is kept if at least 50% of the
GT source keypoints that lie in its source region dilated by a 21 x 21 square (10 px Chebyshev radius) have
their GT target inside its dilated destination region; a cluster with no GT source keypoint is dropped [paper:
"contains a pair of annotated keypoints"]. Its pixels whose destination is inside the target mask are the
matches, ordered by cluster, then raster order.
"""

from __future__ import annotations

import math

import torch


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
