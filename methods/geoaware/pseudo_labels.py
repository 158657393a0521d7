"""DIY-SC's pseudo-labels on feature tensors: zero-shot nearest neighbours, relaxed cyclic consistency and
chaining along an n-tuple of images (Dünkel et al., "Do It Yourself: Learning Semantic Correspondence from
Pseudo-Labels", 2025; ``../shared/seeds/diy_sc_paper.txt`` Sec. 3.2).

Every constant and rule follows the released code (odunkel/DIY-SC, commit e1121c07, ``gen_pseudo_labels.py``
and ``utils/utils_pseudo_gt.py``, run as its README's commands run it): our own implementation, checked
against their functions by golden tensors (``tools/golden/geoaware/make_diysc_golden.py``). The spherical
filter is in ``prototype_filter.py``, the tuple sampling in ``pseudo_label_sampling.py``. The zero-shot
features are the family's (``features.DINOv2Source``: as their ``preprocess_map.py --dino`` saves them).

Where the paper and the code differ (we follow the code):

- relaxed cyclic consistency: the paper allows "a deviation of one feature patch" with ``< r_max``; the
  code's radius is ``rej_th_patch * 840 / 60 = 2 * 14 = 28`` canvas pixels, compared with ``<=`` between
  patch corners, so a return up to two patches away (straight) or one diagonal step is kept;
- the back-match of a pair in the chain searches only the points still alive in the first image of that
  pair (not its whole mask), and the first pair's source points are the mask's patches;
- the chain steps one azimuth bin (45 degrees) per link, so a 4-tuple spans 135 degrees (the paper says the
  4-tuple "considers the full range of 180 degrees").

Coordinates: a matched patch ``(row, col)`` of the ``60 x 60`` grid becomes the canvas pixel of its top-left
corner ``(14 * col, 14 * row)`` on the 840 px canvas (``kps_grid`` in their code: corners, not centres).
"""

from __future__ import annotations

import itertools
import random
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from corrbench.geometry import ResizePolicy

from .features import FAMILY_RESOLUTION, PATCH
from .prototype_filter import SPHERE_THRESHOLD, sphere_agreement

#: The canvas DIY-SC extracts DINOv2 ViT-B/14 features on (``--img_size 840``; 60 x 60 patches of 14 px): the
#: family's canvas, named here for the pseudo-label settings.
RESOLUTION = FAMILY_RESOLUTION
PATCH_SIZE = PATCH
#: Channels of their SD feature stack ahead of DINOv2's (s3 640 + s4 1280 + s5 1280), normalised apart.
SD_CHANNELS = 640 + 1280 + 1280
#: ``--rej_th_patch``: the relaxed cyclic-consistency radius in patches (times the patch stride in pixels).
REJECTION_PATCHES = 2
#: ``--n_tupl``: images per chain.
CHAIN_LENGTH = 4
#: ``normalize_features``'s epsilon.
NORM_EPS = 1e-10
CYCLE_MODES = ("relaxed", "strict")  # their cyclic_consistency_mode "eucl_dist" and "strict"


def pad_to_canvas(image: Image.Image, resolution: int = RESOLUTION, resample=Image.Resampling.LANCZOS) -> Image.Image:
    """DIY-SC's ``resize`` of an object mask: longest side to ``resolution`` (PIL ``resample``), centred on a black
    square. (Images take the same path in the family's ``features.DINOv2Source``, on tensors.)"""
    transform = ResizePolicy("longest_side_pad", resolution).transform(image.size)
    content = image.resize(transform.resized_size, resample)
    canvas = Image.new(image.mode, (resolution, resolution), 0)
    canvas.paste(content, transform.offset)
    return canvas


def normalize_descriptors(features: torch.Tensor, sd_channels: int = 0, eps: float = NORM_EPS) -> torch.Tensor:
    """``(B, N, C)`` -> unit rows, as their ``normalize_features``: with SD features (the first
    ``sd_channels`` channels), SD and DINOv2 parts are normalised apart, then the concatenation again."""
    if sd_channels:
        sd, dino = features[..., :sd_channels], features[..., sd_channels:]
        features = torch.cat([sd / (sd.norm(dim=-1, keepdim=True) + eps),
                              dino / (dino.norm(dim=-1, keepdim=True) + eps)], dim=-1)
    return features / (features.norm(dim=-1, keepdim=True) + eps)


def foreground_patches(mask: np.ndarray, grid: int, resolution: int = RESOLUTION) -> torch.Tensor:
    """Sorted flat indices (``row * grid + col``) of the grid cells on an object mask ``(H, W)`` bool.

    Their two resizes: the 0/255 mask to the canvas with LANCZOS (centre-padded), then to ``grid x grid``
    with NEAREST, object where the value is above 0. Their SAM masks are already square (960 px), which the
    same code resizes without padding; a mask in the image's own frame (SPair's segmentation) is padded as
    the image is.
    """
    image = Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L")
    canvas = pad_to_canvas(image, resolution)
    cells = np.asarray(canvas.resize((grid, grid), Image.Resampling.NEAREST)) > 0
    return torch.from_numpy(np.flatnonzero(cells.reshape(-1)))


def patch_corners(grid: int, resolution: int = RESOLUTION) -> torch.Tensor:
    """``(grid * grid, 2)`` int ``(row, col)`` canvas pixels of each cell's top-left corner (their ``kps_grid``)."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    coords = torch.stack([rows, cols], dim=-1).reshape(-1, 2)
    return (resolution / grid * coords.float()).to(torch.int)


def nearest_neighbours(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Index of the most similar reference row (dot product of unit rows) for each query row."""
    return torch.argmax(queries @ references.T, dim=-1).cpu()


def cycle_consistent_matches(features: torch.Tensor, first: int, second: int, points_first: torch.Tensor,
                             points_second: torch.Tensor, corners: torch.Tensor, *, mode: str = "relaxed",
                             radius: float = REJECTION_PATCHES * PATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Matches ``points_first`` (flat cell indices of image ``first``) -> ``points_second`` that survive the
    cyclic check (their ``get_cyclic_consistent_kps_for_pair``): the forward nearest neighbour among
    ``points_second``, then back among ``points_first``; ``relaxed`` keeps a match whose return lands within
    ``radius`` canvas pixels (``<=``, between cell corners), ``strict`` only one that returns to itself.

    features: ``(K, N, C)`` unit descriptors of the K images. Returns the kept ``(first, second)`` indices,
    row-aligned, in the order of ``points_first``.
    """
    forward = points_second[nearest_neighbours(features[first, points_first], features[second, points_second])]
    back = points_first[nearest_neighbours(features[second, forward], features[first, points_first])]
    if mode == "strict":
        keep = points_first == back
    elif mode == "relaxed":
        distance = torch.norm(corners[points_first.long()].float() - corners[back.long()].float(), dim=1)
        keep = distance <= radius
    else:
        raise ValueError(f"unknown cyclic-consistency mode {mode!r}; use one of {', '.join(CYCLE_MODES)}")
    return points_first[keep], forward[keep]


def chain_matches(features: torch.Tensor, foreground: Sequence[torch.Tensor], corners: torch.Tensor, *,
                  mode: str = "relaxed", radius: float = REJECTION_PATCHES * PATCH_SIZE) -> list[torch.Tensor]:
    """Their ``bicyclic_chain``: propagate the first image's object cells along images 0 -> 1 -> ... -> K-1,
    checking each link (``cycle_consistent_matches``), then drop, walking back, the points of earlier images
    whose successors were rejected. Returns K row-aligned index tensors: row ``r`` of each is one chained point.
    """
    links = []
    alive = foreground[0]
    for k in range(len(foreground) - 1):
        kept, alive = cycle_consistent_matches(features, k, k + 1, alive, foreground[k + 1], corners,
                                               mode=mode, radius=radius)
        links.append((kept, alive))
    chained: list[torch.Tensor | None] = [None] * len(foreground)
    chained[-2], chained[-1] = links[-1]
    for k in range(len(foreground) - 3, -1, -1):
        # their test: is the link's target still among the chained points of the next image (by value)
        kept, targets = links[k]
        chained[k] = kept[torch.isin(targets, chained[k + 1])]
    return chained  # type: ignore[return-value]


def ordered_pairs(count: int, rng: random.Random) -> list[tuple[int, int]]:
    """Every ordered pair of the tuple's images, shuffled (their ``random.shuffle`` of the permutations)."""
    pairs = list(itertools.permutations(range(count), 2))
    rng.shuffle(pairs)
    return pairs


def tuple_pseudo_labels(features: torch.Tensor, foreground: Sequence[torch.Tensor], corners: torch.Tensor,
                        rng: random.Random, *, spheres: torch.Tensor | None = None,
                        sphere_threshold: float = SPHERE_THRESHOLD, mode: str = "relaxed",
                        radius: float = REJECTION_PATCHES * PATCH_SIZE,
                        ) -> list[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """The pseudo-labels of one K-tuple (their ``PairsDataset.__getitem__``, ``bicyclic_chain``): the chained
    points, then for every ordered pair ``(i, j)`` in shuffled order the rows whose spherical points agree
    (``spheres`` ``(K, N, 3)``; no filter when None). Pairs left without points are dropped.

    Returns ``(i, j, cells_i, cells_j)`` with row-aligned flat cell indices.
    """
    chained = chain_matches(features, foreground, corners, mode=mode, radius=radius)
    labels = []
    for i, j in ordered_pairs(len(foreground), rng):
        cells_i, cells_j = chained[i], chained[j]
        if spheres is not None:
            agree = sphere_agreement(spheres[i, cells_i], spheres[j, cells_j], sphere_threshold)
            cells_i, cells_j = cells_i[agree], cells_j[agree]
        if len(cells_i):
            labels.append((i, j, cells_i, cells_j))
    return labels
