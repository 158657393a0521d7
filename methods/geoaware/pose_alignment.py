"""GeoAware-SC's test-time adaptive pose alignment (``--ADAPT_FLIP --MUTUAL_NN``), in keypoint-id space.

The authors' rule (Junyi42/GeoAware-SC ``pck_train.compute_pck`` with ``utils_geoware.permute_indices``,
``flip_keypoints``, ``optimized_kps_1_to_2`` and ``utils_correspondence.get_distance_mutual_nn``), for one pair:

1. the source image is also described mirrored (their ``_flip`` features: the original image flipped, then put on
   the canvas);
2. each keypoint is queried in the mirrored source at the mirrored canvas position ``S - x`` of its FLIP PARTNER
   (left eye -> where the right eye lands), the next id of its flip group, cyclically, when every id of the group
   is mutually visible, else at its own mirrored position;
3. the criterion, for the source as is and mirrored (``pose_criterion``):
   - ``mask`` (their default, ``get_distance``): both descriptor maps bilinearly resized to 64 x 64 cells and the
     foreground masks (on the canvas) nearest-resized to 64 x 64; descriptors multiplied by their mask, every
     entry that is then exactly 0 set to -100000 (background cells, and any exact zero of a foreground cell, as
     theirs); for each foreground source cell the smallest L2 distance to ANY target cell (background cells
     included, far away at -100000); the mean of those;
   - ``mutual-nn`` (``--MUTUAL_NN``, ``get_distance_mutual_nn``): the mean L2 distance between mutual nearest
     neighbours of the normalised source and target descriptors (all cells);
4. if the mirrored distance is smaller, the prediction of every keypoint whose partner (full group permutation)
   is mutually visible is replaced by its mirrored-source prediction.

Flip groups are the tables the flip augmentation of training uses too, each kept with its dataset's format:
SPair-71k's ``corrbench.datasets.spair_flip`` (GeoAware-SC's ``SPAIR_FLIP_TRN``, in SPair's own ids: their test-time
``SPAIR_FLIP`` numbers bus keypoints from 10 on two lower, having dropped ids 8 and 9, unused in the test split;
corrbench's pairs carry SPair's ids) and AP-10K's ``corrbench.datasets.ap10k.layout.FLIP_PAIRS`` (``AP10K_FLIP``,
one table for every species, by keypoint name). Every group of the authors' tables is a pair. The option names the
table, since the keypoint ids of other datasets with the same category names (PF-PASCAL) mean other parts. Ids that
no group holds are their own mirror image; a pair's ids that a table does not know (SPair-U's new keypoints) are
such ids.

Differences from the authors' code: their groups are first restricted to the keypoints that occur in the split
("used points"); here a group keeps every id, which differs only for a group with a member that never occurs in
the split. Their masks are SAM masks stored beside the features (``<image>_mask.png`` and ``_mask_flip.png``,
thresholded at 127); here the ``mask`` criterion reads the dataset's masks through corrbench's batching (SPair-71k's
segmentation; the filled object box where a dataset ships no masks), put on the canvas by nearest resizing, and
the mirrored source's mask is the mirrored mask. Their only config with ``ADAPT_FLIP`` (zero-shot SD+DINOv2) uses
the mask criterion.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from corrbench.datasets.ap10k.layout import FLIP_PAIRS as AP10K_FLIP_PAIRS
from corrbench.datasets.spair_flip import SPAIR_FLIP_PAIRS, spair_flip_pairs
from corrbench.errors import ConfigError

#: The ``pose_alignment`` option's tables.
TABLES = ("spair71k", "ap10k")
#: The ``pose_criterion`` option's values: the authors' default first.
CRITERIA = ("mask", "mutual-nn")
#: ``get_distance``'s RESOLUTION: the side of the grid the masked criterion compares on.
MASK_GRID = 64
#: ``get_distance``'s value for masked-out (exactly zero) descriptor entries.
MASKED_VALUE = -100000.0


def flip_groups(table: str, category: str) -> tuple[tuple[str, ...], ...]:
    """The mirror groups (keypoint-id strings) of ``category`` in ``table``."""
    if table == "ap10k":
        return AP10K_FLIP_PAIRS
    if table == "spair71k" and category in SPAIR_FLIP_PAIRS:
        return spair_flip_pairs(category)
    raise ConfigError(f"pose alignment: no {table} flip table for category {category!r}",
                      hint=f"pose_alignment={table} applies to {table}'s categories only; use pose_alignment=off")


def flip_plan(groups: Sequence[Sequence[str]], kp_ids: Sequence[str]) -> tuple[list[int], list[bool]]:
    """For a pair's rows (keypoint ids, all mutually visible): the row whose mirrored position each row queries,
    and which rows take the mirrored prediction if the mirrored source wins (steps 2 and 4)."""
    row_of = {kp_id: row for row, kp_id in enumerate(kp_ids)}
    partner = {}
    for group in groups:
        for i, member in enumerate(group):
            partner[member] = (group[(i + 1) % len(group)], all(m in row_of for m in group))
    query, replace = [], []
    for kp_id in kp_ids:
        mate, whole_group = partner.get(kp_id, (kp_id, True))
        query.append(row_of[mate] if whole_group else row_of[kp_id])
        replace.append(mate in row_of)
    return query, replace


def mutual_nn_distance(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L2 distance between the mutual nearest neighbours of two ``(C, h, w)`` descriptor maps (step 3)."""
    a, b = source.flatten(1).T.double(), target.flatten(1).T.double()
    distances = torch.cdist(a, b)
    forward, backward = distances.argmin(dim=1), distances.argmin(dim=0)
    mutual = backward[forward] == torch.arange(len(a), device=a.device)
    return distances.min(dim=1).values[mutual].mean()


def masked_nn_distance(source: torch.Tensor, target: torch.Tensor, source_mask: torch.Tensor,
                       target_mask: torch.Tensor) -> torch.Tensor:
    """The ``mask`` criterion (step 3): ``(C, h, w)`` descriptor maps and ``(H, W)`` canvas foreground masks ->
    the mean distance of each foreground source cell to its nearest target cell, on the 64 x 64 grid."""
    size = (MASK_GRID, MASK_GRID)

    def on_grid(features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        resized = F.interpolate(features[None].double(), size=size, mode="bilinear", align_corners=False)[0]
        inside = F.interpolate(mask[None, None].double(), size=size, mode="nearest")[0, 0] > 0
        masked = resized * inside
        masked[masked == 0] = MASKED_VALUE  # as theirs: an exact zero inside the mask is masked out too
        return masked.flatten(1).T, inside.flatten()

    src, src_inside = on_grid(source, source_mask)
    trg, _ = on_grid(target, target_mask)
    return torch.cdist(src[src_inside], trg).min(dim=1).values.mean()
