"""The records that flow through corrbench: adapter -> Pair -> PairBatch -> Matcher -> MatchOutput.

Coordinate convention (one for the whole project, see ``corrbench/geometry.py``):
points are ``(x, y)`` in pixels of the ORIGINAL image, integer coordinates are pixel centres, and
``(0, 0)`` is the centre of the top-left pixel, so an image of width ``W`` spans ``[-0.5, W - 0.5]``.
Sizes are always ``(width, height)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import MatcherContractError
from .geometry import ResizeTransform, Size


def _as_points(value: Any, name: str, pair_id: str) -> np.ndarray:
    points = np.asarray(value, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"pair {pair_id!r}: {name} must have shape (N, 2), got {points.shape}")
    return points


@dataclass(frozen=True, eq=False)
class Pair:
    """One annotated image pair, as a dataset adapter produces it.

    Keypoint arrays are row-aligned: row ``i`` of ``src_kps`` and ``trg_kps`` is the same semantic
    keypoint (``kp_ids[i]``). A point counts in the metrics only where ``src_visible & trg_visible``.

    Fields:
        pair_id: unique within the benchmark split (the SPair pair-file stem, for instance).
        category: the category name used for per-category aggregation.
        src_image, trg_image: image files.
        src_size, trg_size: ``(W, H)`` of the images, from the annotation.
        src_kps, trg_kps: ``(N, 2)`` float64 pixel coordinates; rows that are not visible may hold NaN.
        src_visible, trg_visible: ``(N,)`` bool.
        src_bbox, trg_bbox: ``(4,)`` ``[x1, y1, x2, y2]`` object box, or None when the dataset has none.
        kp_ids: N keypoint-type names (strings).
        src_mask, trg_mask: optional object-mask files.
        meta: dataset-specific extras (SPair's viewpoint/scale variation, truncation, ...).
    """

    pair_id: str
    category: str
    src_image: Path
    trg_image: Path
    src_size: Size
    trg_size: Size
    src_kps: np.ndarray
    trg_kps: np.ndarray
    src_visible: np.ndarray
    trg_visible: np.ndarray
    src_bbox: np.ndarray | None = None
    trg_bbox: np.ndarray | None = None
    kp_ids: tuple[str, ...] = ()
    src_mask: Path | None = None
    trg_mask: Path | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = _as_points(self.src_kps, "src_kps", self.pair_id)
        trg = _as_points(self.trg_kps, "trg_kps", self.pair_id)
        if src.shape != trg.shape:
            raise ValueError(
                f"pair {self.pair_id!r}: src_kps {src.shape} and trg_kps {trg.shape} must be row-aligned"
            )
        n = src.shape[0]
        for name in ("src_visible", "trg_visible"):
            vis = np.asarray(getattr(self, name), dtype=bool)
            if vis.shape != (n,):
                raise ValueError(f"pair {self.pair_id!r}: {name} must have shape ({n},), got {vis.shape}")
            object.__setattr__(self, name, vis)
        object.__setattr__(self, "src_kps", src)
        object.__setattr__(self, "trg_kps", trg)
        for name in ("src_bbox", "trg_bbox"):
            box = getattr(self, name)
            if box is not None:
                box = np.asarray(box, dtype=np.float64)
                if box.shape != (4,):
                    raise ValueError(f"pair {self.pair_id!r}: {name} must be [x1, y1, x2, y2], got {box.shape}")
                object.__setattr__(self, name, box)
        if self.kp_ids and len(self.kp_ids) != n:
            raise ValueError(f"pair {self.pair_id!r}: {len(self.kp_ids)} kp_ids for {n} keypoints")
        object.__setattr__(self, "kp_ids", tuple(str(k) for k in self.kp_ids))
        object.__setattr__(self, "src_image", Path(self.src_image))
        object.__setattr__(self, "trg_image", Path(self.trg_image))
        object.__setattr__(self, "src_size", (int(self.src_size[0]), int(self.src_size[1])))
        object.__setattr__(self, "trg_size", (int(self.trg_size[0]), int(self.trg_size[1])))

    @property
    def num_keypoints(self) -> int:
        return int(self.src_kps.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """Keypoints visible in both images: the only ones that are queried and scored."""
        return self.src_visible & self.trg_visible

    @property
    def src_id(self) -> str:
        """A stable id of the source image (its path), used by feature caches."""
        return str(self.src_image)

    @property
    def trg_id(self) -> str:
        return str(self.trg_image)


@dataclass(frozen=True, eq=False)
class PairBatch:
    """What a Matcher sees: images and source keypoints, never the target keypoints.

    Shapes (B pairs, N = the largest keypoint count in the batch; shorter pairs are padded):
        src_images, trg_images: B float tensors ``(3, H_i, W_i)``, RGB in [0, 1], original size.
        src_kps: ``(B, N, 2)`` float32 pixel coordinates in the source image (padding rows are 0).
        query_mask: ``(B, N)`` bool, True where a prediction is wanted (keypoints visible in both
            images); predictions elsewhere are ignored but must still be finite.
        src_sizes, trg_sizes: B ``(W, H)`` tuples.
        src_masks, trg_masks: B ``(H_i, W_i)`` bool tensors, or None when not loaded.
        pair_ids, categories, src_ids, trg_ids: B strings each (ids key feature caches).
        kp_ids: B tuples of the pairs' keypoint-type ids, one per row (``Pair.kp_ids``; empty where the dataset
            has none); methods that know a dataset's keypoint semantics (GeoAware-SC's flip partners) read them.
        ground_truth: ``(B, N, 2)`` target keypoints, present ONLY for matchers that declare
            ``uses_ground_truth = True`` (the test-only oracle); results of such runs say so.
    """

    src_images: Sequence[torch.Tensor]
    trg_images: Sequence[torch.Tensor]
    src_kps: torch.Tensor
    query_mask: torch.Tensor
    src_sizes: Sequence[Size]
    trg_sizes: Sequence[Size]
    pair_ids: Sequence[str]
    categories: Sequence[str]
    src_ids: Sequence[str]
    trg_ids: Sequence[str]
    src_masks: Sequence[torch.Tensor] | None = None
    trg_masks: Sequence[torch.Tensor] | None = None
    ground_truth: torch.Tensor | None = None
    kp_ids: Sequence[tuple[str, ...]] | None = None

    @property
    def size(self) -> int:
        return len(self.pair_ids)

    @property
    def max_keypoints(self) -> int:
        return int(self.src_kps.shape[1])

    def to(self, device: torch.device | str) -> "PairBatch":
        def move(items):
            return None if items is None else [t.to(device) for t in items]

        return replace(
            self,
            src_images=move(self.src_images),
            trg_images=move(self.trg_images),
            src_kps=self.src_kps.to(device),
            query_mask=self.query_mask.to(device),
            src_masks=move(self.src_masks),
            trg_masks=move(self.trg_masks),
            ground_truth=None if self.ground_truth is None else self.ground_truth.to(device),
        )


@dataclass(frozen=True, eq=False)
class MatchOutput:
    """A Matcher's answer.

    points: ``(B, N, 2)`` predicted target points, pixels of the ORIGINAL target image.
    scores: optional ``(B, N)`` confidence of each prediction (higher is more confident).
    """

    points: torch.Tensor
    scores: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class FeatureMap:
    """Dense descriptors of one image and how its grid relates to the image's pixels.

    features: ``(C, h, w)`` descriptors.
    transform: the ``ResizeTransform`` that took the original image to the frame the network saw.
    cell_rule: how processed-frame pixels map to feature cells (see ``corrbench.geometry.CELL_RULES``).
    """

    features: torch.Tensor
    transform: ResizeTransform
    cell_rule: str = "half_pixel"

    def __post_init__(self) -> None:
        if not isinstance(self.features, torch.Tensor) or self.features.ndim != 3:
            shape = tuple(self.features.shape) if isinstance(self.features, torch.Tensor) else type(self.features)
            raise MatcherContractError(
                f"FeatureMap.features must be one image's (C, h, w) tensor, got {shape}",
                hint="build one FeatureMap per image, e.g. FeatureMap(features[i], transform) for a (B, C, h, w) batch",
            )

    @property
    def grid_size(self) -> Size:
        """``(w, h)`` of the feature grid."""
        return int(self.features.shape[2]), int(self.features.shape[1])

    def nbytes(self) -> int:
        return self.features.element_size() * self.features.nelement()
