"""The straightforward implementation of flow-anchored mining that ``perf/mining.py`` measures against.

Same chain and same result as ``corrbench.methods.marco.flow_anchoring.mine_matches`` (its default
``FlowAnchoringConfig``), written the way the reference code and a first implementation do it:

- mutual nearest neighbours from the full ``N x M`` similarity matrix in two passes (row maxima, then column
  maxima), where corrbench streams row chunks once;
- one affine per triangle, and point location by a loop over the triangles (each tests the cells of its
  bounding box, then moves its cells), where corrbench solves all triangles in one batch and tests every
  candidate cell of a chunk of triangles at once;
- the anchoring by a loop over the clusters, each dilating its full-image source and destination regions with
  a 21 x 21 max-pool, where corrbench reads the windows around the keypoints of all clusters at once;
- the matches collected cluster by cluster.

Steps that have no loop to remove (mask resizing, keypoint seeds, Delaunay, flow upsampling and colours,
k-means + BIC, sampling) call corrbench's own functions, so the comparison isolates the vectorised steps.
Used by the perf script and by ``tests/test_perf_mining.py``, which checks both give the same matches.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay

from corrbench.geometry import pixels_to_cells
from corrbench.methods.marco.anchoring import flow_destinations
from corrbench.methods.marco.clustering import cluster_flow, flow_colour_features
from corrbench.methods.marco.flow import add_keypoint_seeds, triangle_inverses, upsample_flow
from corrbench.methods.marco.flow_anchoring import FlowAnchoringConfig, MinedMatches
from corrbench.methods.marco.mining import masks_to_feature_grid, sample_matches

DEFAULT = FlowAnchoringConfig()


def loop_mutual_matches(src: torch.Tensor, trg: torch.Tensor, mask_src: torch.Tensor, mask_trg: torch.Tensor,
                        config: FlowAnchoringConfig = DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """Mutual matches (cells ``(x, y)``) from the whole similarity matrix, released ratio rule and fallback."""
    src_y, src_x = torch.nonzero(mask_src, as_tuple=True)
    trg_y, trg_x = torch.nonzero(mask_trg, as_tuple=True)
    a = F.normalize(src[:, src_y, src_x].T.float(), dim=1, eps=1e-8)
    b = F.normalize(trg[:, trg_y, trg_x].T.float(), dim=1, eps=1e-8)
    sim = a @ b.T  # N x M at once
    top = sim.topk(2, dim=1)
    column_arg = sim.argmax(dim=0)
    rows = torch.arange(sim.shape[0])
    mutual = column_arg[top.indices[:, 0]] == rows
    keep = mutual & (top.values[:, 0] >= config.ratio * (top.values[:, 1] + 1e-8))
    if int(keep.sum()) < config.min_seed_matches:
        keep = mutual
    src_index, trg_index = rows[keep], top.indices[keep, 0]
    src_cells = torch.stack((src_x[src_index], src_y[src_index]), dim=1).float()
    trg_cells = torch.stack((trg_x[trg_index], trg_y[trg_index]), dim=1).float()
    return src_cells, trg_cells


def loop_dense_flow(src_seeds: torch.Tensor, trg_seeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(h, w, 2)`` flow, triangle by triangle: its inverse and affine (corrbench's closed form, called on the
    one triangle so the numbers are bit-equal), its bounding-box cells tested, then its cells moved."""
    h, w = mask.shape
    src, trg = src_seeds.double(), trg_seeds.double()
    simplices = torch.from_numpy(Delaunay(src.numpy()).simplices.astype(np.int64))
    which = torch.full((h, w), -1, dtype=torch.long)
    affines = []
    for t in range(simplices.shape[0]):
        corners = src[simplices[t]][None]  # (1, 3, 2)
        inverse, degenerate = triangle_inverses(corners)
        affines.append((inverse[:, :, :, None] * trg[simplices[t]][None, None]).sum(dim=2).transpose(1, 2)[0])
        if bool(degenerate[0]):
            continue
        x0, y0 = (max(int(v), 0) for v in torch.ceil(corners[0].amin(dim=0) - 1e-6))
        x1, y1 = torch.floor(corners[0].amax(dim=0) + 1e-6).tolist()
        x1, y1 = min(int(x1), w - 1), min(int(y1), h - 1)
        if x1 < x0 or y1 < y0:
            continue
        gy, gx = torch.meshgrid(torch.arange(y0, y1 + 1), torch.arange(x0, x1 + 1), indexing="ij")
        cx, cy = gx.flatten(), gy.flatten()
        bary = cx[:, None] * inverse[0, 0] + cy[:, None] * inverse[0, 1] + inverse[0, 2]
        inside = (bary >= -1e-8).all(dim=1) & mask[cy, cx]
        which[cy[inside], cx[inside]] = t  # later (larger) triangles win shared edges
    flow = torch.zeros(h, w, 2, dtype=src_seeds.dtype)
    for t, affine in enumerate(affines):
        ys, xs = torch.nonzero(which == t, as_tuple=True)
        x, y = xs.double()[:, None], ys.double()[:, None]
        warped = affine[None, :, 0] * x + affine[None, :, 1] * y + affine[None, :, 2]
        flow[ys, xs] = (warped - torch.cat((x, y), dim=1)).to(flow.dtype)
    return flow


def loop_anchored_clusters(flow_px: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, kp_src: torch.Tensor,
                           kp_trg: torch.Tensor, config: FlowAnchoringConfig = DEFAULT) -> torch.Tensor:
    """Per cluster: its source and destination regions, each dilated over the whole image, read at the keypoints."""
    big_h, big_w = valid.shape
    xs, ys, xd, yd = flow_destinations(flow_px, valid)
    r = config.anchor_radius

    def at(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.round(points[:, 1]).clamp(0, big_h - 1).long(), torch.round(points[:, 0]).clamp(0, big_w - 1).long())

    keep = []
    for cluster in range(int(labels.max()) + 1):
        member = labels == cluster
        source = torch.zeros(big_h, big_w)
        target = torch.zeros(big_h, big_w)
        source[ys[member], xs[member]] = 1
        target[yd[member], xd[member]] = 1
        source = F.max_pool2d(source[None, None], 2 * r + 1, stride=1, padding=r)[0, 0] > 0
        target = F.max_pool2d(target[None, None], 2 * r + 1, stride=1, padding=r)[0, 0] > 0
        in_source = source[at(kp_src)]
        n_source = int(in_source.sum())
        keep.append(n_source > 0 and int((in_source & target[at(kp_trg)]).sum()) / n_source >= config.anchor_threshold)
    return torch.tensor(keep, dtype=torch.bool)


def loop_collect(flow_px: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor,
                 target_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys, xd, yd = flow_destinations(flow_px, valid)
    lands = target_mask.bool()[yd, xd]
    sources, targets = [], []
    for cluster in torch.nonzero(keep).flatten().tolist():
        index = torch.nonzero((labels == cluster) & lands).flatten()
        sources.append(torch.stack((xs[index], ys[index]), dim=1))
        targets.append(torch.stack((xd[index], yd[index]), dim=1))
    empty = torch.empty(0, 2, dtype=torch.long)
    return (torch.cat(sources) if sources else empty), (torch.cat(targets) if targets else empty)


def loop_mine_matches(features: torch.Tensor, masks: torch.Tensor, keypoints: torch.Tensor, seed: int = 0,
                      config: FlowAnchoringConfig = DEFAULT) -> MinedMatches:
    """``mine_matches`` (CPU, default config) the loop way, with the same per-step timing names."""
    times: dict[str, float] = {}
    last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        times[name] = (now - last) * 1000
        last = now

    h, w = features.shape[-2:]
    big_h, big_w = masks.shape[-2:]
    masks = masks.bool()
    keypoints = keypoints.float()
    grid = masks_to_feature_grid(masks, (h, w))
    src_cells, trg_cells = loop_mutual_matches(features[0], features[1], grid[0], grid[1], config)
    lap("mutual_matches")
    kp_cells = pixels_to_cells(keypoints, (big_w, big_h), (w, h), rule="marco")
    src_seeds, trg_seeds, _ = add_keypoint_seeds(src_cells, trg_cells, kp_cells[0], kp_cells[1], grid[0], grid[1])
    flow = loop_dense_flow(src_seeds, trg_seeds, grid[0])
    lap("dense_flow")
    flow_px = upsample_flow(flow, (big_h, big_w))
    colours, valid = flow_colour_features(flow_px, masks[0])
    labels = cluster_flow(colours, config.k_init, config.k_min, config.kmeans_seed, config.kmeans_max_iter,
                          config.refine_max_iter, config.kmeans_tol)
    lap("clustering")
    keep = loop_anchored_clusters(flow_px, valid, labels, keypoints[0], keypoints[1], config)
    source, target = loop_collect(flow_px, valid, labels, keep, masks[1])
    sampled = sample_matches(source, target, config.num_samples, config.min_matches,
                             torch.Generator().manual_seed(seed))
    lap("anchoring_and_sampling")
    if sampled is None:
        empty = torch.empty(0, 2)
        return MinedMatches(empty, empty.clone(), {"matches": int(source.shape[0])}, "too few matches", times)
    return MinedMatches(sampled[0].float(), sampled[1].float(), {"matches": int(source.shape[0])}, None, times)
