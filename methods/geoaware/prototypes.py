"""Jamais Vu's category-prototype objective: canonical 3D keypoints per category and the losses that use them.

Mariotti et al., "Jamais Vu" (NeurIPS 2025), Sec. 3.2-3.3, as released in VICO-UoE/JamaisVu (commit d236e73:
``model_utils/category_prototype.py``, ``calculate_3d_loss`` in ``utils/utils_losses.py``). Each training image
(the source image of each pair, as their loop does) adds to the Geo-SC loss

    L_P + 0.3 L_Z + L_geom,o->p + L_geom,p->o

- L_P: the visible keypoints lifted to 3D with the image's point map are aligned to the category's canonical
  keypoints P by a similarity (scale >= 1); the residual moves P (and only P: the alignment has no gradient).
- L_Z: cross-entropy of each visible keypoint's descriptor against the category's keypoint descriptors Z
  (cosine similarity times the learned exp(temperature)); the target is the keypoint's own index.
- L_geom: object points (mask, depth-outlier filter, farthest-point sampling to 1024) get canonical
  coordinates as a softmax over Z of P (P detached, as the paper says); small neighbourhoods of the posed and
  canonical point clouds must agree up to a similarity, pseudo-geodesic neighbourhoods in the posed cloud
  and k-nearest ones in the canonical cloud (k = 64).

Paper/code differences (this module follows the code): the paper's L1 norms are smooth-L1 (beta 1e-3) of
distances normalised by the larger radius; the temperature multiplies (exp(t), t initialised at 0) instead of
dividing; the posed cloud's neighbourhoods use a transposed distance update (``pseudo_geodesic_neighbours``);
object masks are filtered by depth (5 MADs), which the paper does not mention; keypoints are looked up at
truncated integer positions with a bilinear sample normalised by (size - 1) under ``align_corners=False`` (a
fraction of a pixel off the keypoint); only the first image of each pair gets the loss. The authors also
log canonical points into ``proto_points`` / ``proto_adapted_feats`` for visualisation; that logging does not
touch the loss and is not reproduced, but the parameters are kept so state dicts load both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from corrbench.errors import ConfigError, DataError

from .prototype_geometry import (
    apply_transform, depth_inlier_mask, farthest_point_sample, local_shape_loss, nearest_neighbours,
    pseudo_geodesic_neighbours, similarity_transform, smooth_distance, SCALE_EPS,
)

# SPair-71k categories in the authors' index order, with the number of keypoints each defines.
SPAIR_PROTOTYPE_CATEGORIES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                              "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor")
SPAIR_KEYPOINTS_PER_CATEGORY = (25, 12, 17, 14, 10, 30, 30, 15, 14, 21, 16, 20, 13, 20, 9, 21, 18, 16)
KEYPOINT_SLOTS = 30  # keypoints are padded to SPair's 30 slots
LOGGED_POINTS = 2 ** 13  # visualisation-only canonical points per category (kept for state-dict compatibility)
SAMPLED_OBJECT_POINTS = 2 ** 10  # the paper's k = 1024 farthest points per object
NEIGHBOURHOOD_SIZE = 64  # the paper's k' = 64
MASK_THRESHOLD = 0.99  # a mask value >= this is object

# Loss weights from calculate_3d_loss (the paper's Sec. 4: L_P + 0.3 L_Z + L_geom)
KEYPOINT_ALIGNMENT_WEIGHT = 1.0
KEYPOINT_FEATURE_WEIGHT = 0.3
OBJECT_TO_PROTOTYPE_WEIGHT = 1.0
PROTOTYPE_TO_OBJECT_WEIGHT = 1.0


class CategoryPrototype(nn.Module):
    """Per category: canonical 3D keypoints ``kps`` (P), their descriptors ``kps_feats`` (Z), a temperature.

    Parameter names, shapes and initialisation are the authors' (``kps`` ~ 1e-5 N(0, 1), ``kps_feats`` ~
    N(0, 1/dim), ``geom_temp`` = 0), so a state dict saved by their trainer (``best_cp.pth``) loads here and
    back. ``proto_points`` / ``proto_adapted_feats`` are their visualisation log (18 x 8192 x 768 floats at
    the defaults, ~450 MB; they receive no gradient). Trained with the adapter, by the same optimiser.
    """

    def __init__(self, feature_dim: int = 768, categories: tuple[str, ...] = SPAIR_PROTOTYPE_CATEGORIES,
                 keypoints_per_category: tuple[int, ...] = SPAIR_KEYPOINTS_PER_CATEGORY,
                 keypoint_slots: int = KEYPOINT_SLOTS, logged_points: int = LOGGED_POINTS,
                 sampled_points: int = SAMPLED_OBJECT_POINTS):
        super().__init__()
        if len(categories) != len(keypoints_per_category) or max(keypoints_per_category) > keypoint_slots:
            raise ConfigError(f"category prototypes: {len(categories)} categories with "
                              f"{len(keypoints_per_category)} keypoint counts (at most {keypoint_slots} each)")
        n = len(categories)
        self.feat_dim = feature_dim
        self.categories = tuple(categories)
        self.sampled_points = sampled_points
        self.register_buffer("num_keypoints_per_cat", torch.tensor(keypoints_per_category))
        self.kps = nn.Parameter(torch.randn(n, keypoint_slots, 3) * 1e-5)
        self.kps_feats = nn.Parameter(torch.randn(n, keypoint_slots, feature_dim) / np.sqrt(feature_dim))
        self.proto_points = nn.Parameter(torch.zeros(n, logged_points, 3))
        self.proto_adapted_feats = nn.Parameter(torch.randn(n, logged_points, feature_dim) / np.sqrt(feature_dim))
        self.geom_temp = nn.Parameter(torch.zeros(1))

    def index(self, category: str) -> int:
        try:
            return self.categories.index(category)
        except ValueError:
            raise ConfigError(f"category prototypes: no prototype for category {category!r}",
                              hint=f"known: {', '.join(self.categories)}") from None

    def keypoints(self, category: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The category's defined canonical keypoints (n, 3) and their descriptors (n, dim)."""
        i = self.index(category)
        n = int(self.num_keypoints_per_cat[i])
        return self.kps[i, :n], self.kps_feats[i, :n]


@dataclass
class PrototypeLosses:
    total: torch.Tensor
    keypoint_alignment: torch.Tensor  # L_P
    keypoint_features: torch.Tensor  # L_Z
    object_to_prototype: torch.Tensor  # L_geom with pseudo-geodesic neighbourhoods of the posed cloud
    prototype_to_object: torch.Tensor  # L_geom with nearest neighbourhoods of the canonical cloud


def pad_to_square(image: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Zero-pad a (..., H, W) map to a centred square (the extra row/column at the end), and its side."""
    height, width = image.shape[-2:]
    diff = abs(height - width)
    padding = (diff // 2, diff - diff // 2, 0, 0) if height > width else (0, 0, diff // 2, diff - diff // 2)
    return F.pad(image, padding, mode="constant", value=0), max(height, width)


def sample_at_keypoints(maps: torch.Tensor, keypoints: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """(K, C) values of a square (C, S, S) map at keypoints (K, 2) (x, y in map pixels); invisible ones are 0.

    As the authors' ``gather_by_indices``: coordinates are truncated to integers, then sampled bilinearly with
    ``align_corners=False`` after normalising by (S - 1), which lands slightly off the pixel centre.
    """
    size = maps.shape[-1]
    cells = keypoints.long().float()
    grid = (2 * cells / (size - 1.0) - 1).clamp(min=-1, max=1).view(1, 1, -1, 2)
    values = F.grid_sample(maps.unsqueeze(0), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    values = values.view(maps.size(0), -1).t()
    return torch.where(visible.view(-1, 1), values, torch.zeros_like(values))


def keypoint_alignment_loss(posed: torch.Tensor, canonical: torch.Tensor) -> torch.Tensor:
    """L_P: posed keypoints (1, V, 3) aligned (no gradient) to the canonical ones (1, V, 3), smooth-L1 residual."""
    mask = torch.ones_like(canonical).bool()
    with torch.no_grad():
        transform = similarity_transform(posed, canonical, mask=mask)
    aligned = apply_transform(transform, posed)
    canonical_radius = (canonical * mask).norm(dim=-1, keepdim=True).max(dim=-2, keepdim=True)[0]
    posed_radius = (aligned * mask).norm(dim=-1, keepdim=True).max(dim=-2, keepdim=True)[0]
    scale = torch.maximum(canonical_radius.detach(), posed_radius.detach()) + SCALE_EPS
    return smooth_distance((aligned / scale).view(-1, 3), (canonical / scale).view(-1, 3))


def prototype_losses(prototype: CategoryPrototype, category: str, keypoints: torch.Tensor, visible: torch.Tensor,
                     descriptors: torch.Tensor, points: torch.Tensor, depth: torch.Tensor, object_mask: torch.Tensor,
                     *, annotation_size: int, neighbourhood_size: int = NEIGHBOURHOOD_SIZE,
                     generator: torch.Generator | None = None) -> PrototypeLosses:
    """Jamais Vu's prototype losses for one training image.

    ``keypoints`` (30, 2): x, y in the annotation frame (the image resized, longest side ``annotation_size``,
    and centre-padded to a square, as Geo-SC's loader does); ``visible`` (30,) bool. ``descriptors`` (D, G, G):
    the adapter's output on the padded square as the Geo-SC loss receives it (each cell L2-normalised, their
    ``normalize_feats``). ``points`` (3, H, W), ``depth`` (1, H, W)
    and ``object_mask`` (1, H, W) at the image's own resolution (``point_maps.read_training_geometry``).
    ``generator`` draws the first farthest point. Every visible keypoint must be one the category defines.
    """
    if not visible.any():
        raise DataError(f"Jamais Vu prototype loss: a {category} image has no visible keypoint")
    canonical_keypoints, keypoint_descriptors = prototype.keypoints(category)
    labels = torch.nonzero(visible).view(-1)
    if labels.max() >= canonical_keypoints.size(0):
        raise DataError(f"Jamais Vu prototype loss: keypoint {int(labels.max())} is visible but {category} "
                        f"defines only {canonical_keypoints.size(0)}")
    temperature = prototype.geom_temp.exp()
    # normalised twice, as theirs (once when fetched, once in each similarity): equal up to rounding, kept for parity
    keypoint_descriptors = F.normalize(F.normalize(keypoint_descriptors, dim=-1), dim=-1)
    all_canonical = prototype.kps[prototype.index(category)]

    # L_P: keypoints lifted with the point map (padded like the image) against P
    points, padded_size = pad_to_square(points)
    depth, _ = pad_to_square(depth)
    object_mask, _ = pad_to_square(object_mask)
    posed_keypoints = sample_at_keypoints(points, keypoints * (padded_size / annotation_size), visible)
    alignment = keypoint_alignment_loss(posed_keypoints[visible].unsqueeze(0), all_canonical[visible].unsqueeze(0))

    # L_Z: descriptors at the keypoints classified among the category's keypoint descriptors
    grid = descriptors.shape[-1]
    keypoint_features = sample_at_keypoints(descriptors, keypoints * (grid / annotation_size), visible)[visible]
    logits = F.normalize(keypoint_features, dim=-1) @ keypoint_descriptors.t() * temperature
    feature_loss = F.cross_entropy(logits, labels)

    # L_geom: sampled object points, posed (point map) against canonical (attention over Z of detached P)
    flat_points = points.permute(1, 2, 0).reshape(1, -1, 3)
    flat_depth = depth.permute(1, 2, 0).reshape(1, -1, 1)
    flat_mask = depth_inlier_mask(object_mask.permute(1, 2, 0).reshape(1, -1, 1).ge(MASK_THRESHOLD), flat_depth)
    dense = F.interpolate(descriptors.unsqueeze(0), size=padded_size, mode="bilinear", align_corners=False)
    flat_features = dense.permute(0, 2, 3, 1).reshape(1, -1, descriptors.size(0))
    posed_cloud, picked = farthest_point_sample(flat_points, flat_mask, prototype.sampled_points, generator)
    picked_features = torch.gather(flat_features, 1, picked.unsqueeze(-1).expand(-1, -1, descriptors.size(0)))
    attention = (F.normalize(picked_features, dim=-1) @ keypoint_descriptors.t() * temperature).softmax(dim=-1)
    canonical_cloud = attention @ canonical_keypoints.detach()
    object_to_prototype = local_shape_loss(canonical_cloud, posed_cloud,
                                           pseudo_geodesic_neighbours(posed_cloud, neighbourhood_size))
    prototype_to_object = local_shape_loss(posed_cloud, canonical_cloud,
                                           nearest_neighbours(canonical_cloud, neighbourhood_size))

    total = (KEYPOINT_ALIGNMENT_WEIGHT * alignment + KEYPOINT_FEATURE_WEIGHT * feature_loss
             + OBJECT_TO_PROTOTYPE_WEIGHT * object_to_prototype + PROTOTYPE_TO_OBJECT_WEIGHT * prototype_to_object)
    return PrototypeLosses(total, alignment, feature_loss, object_to_prototype, prototype_to_object)
