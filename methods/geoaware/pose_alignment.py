"""GeoAware-SC's test-time adaptive pose alignment (``--ADAPT_FLIP --MUTUAL_NN``), in keypoint-id space.

The authors' rule (Junyi42/GeoAware-SC ``pck_train.compute_pck`` with ``utils_geoware.permute_indices``,
``flip_keypoints``, ``optimized_kps_1_to_2`` and ``utils_correspondence.get_distance_mutual_nn``), for one pair:

1. the source image is also described mirrored (their ``_flip`` features: the original image flipped, then put on
   the canvas);
2. each keypoint is queried in the mirrored source at the mirrored canvas position ``S - x`` of its FLIP PARTNER
   (left eye -> where the right eye lands), the next id of its flip group, cyclically, when every id of the group
   is mutually visible, else at its own mirrored position;
3. the criterion: the mean L2 distance between mutual nearest neighbours of the normalised source and target
   descriptors (all cells), for the source as is and mirrored;
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
the split. Their default criterion (without ``--MUTUAL_NN``) needs SAM foreground masks and is not implemented;
their only config with ``ADAPT_FLIP`` (zero-shot SD+DINOv2) uses it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from corrbench.datasets.ap10k.layout import FLIP_PAIRS as AP10K_FLIP_PAIRS
from corrbench.datasets.spair_flip import SPAIR_FLIP_PAIRS, spair_flip_pairs
from corrbench.errors import ConfigError

#: The ``pose_alignment`` option's tables.
TABLES = ("spair71k", "ap10k")


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
