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

Flip groups come from the authors' tables, by corrbench's keypoint ids: SPair-71k (``SPAIR71K_FLIP_PAIRS``) and
AP-10K (``AP10K_FLIP_PAIRS``, by keypoint name). The option names the table, since the keypoint ids of other
datasets with the same category names (PF-PASCAL) mean other parts. Ids that no group holds are their own mirror
image; a pair's ids that a table does not know (SPair-U's new keypoints) are such ids.

Differences from the authors' code: their groups are first restricted to the keypoints that occur in the split
("used points"); here a group keeps every id, which differs only for a group with a member that never occurs in
the split. Their default criterion (without ``--MUTUAL_NN``) needs SAM foreground masks and is not implemented;
their only config with ``ADAPT_FLIP`` (zero-shot SD+DINOv2) uses it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from corrbench.errors import ConfigError

#: SPair-71k's mirror pairs by keypoint id (GeoAware-SC ``SPAIR_FLIP_TRN``, in SPair's own ids: their test-time
#: ``SPAIR_FLIP`` numbers bus keypoints after dropping ids 8 and 9, unused in the test split, so its bus pairs from
#: id 10 on read two lower; corrbench's pairs carry SPair's ids). Every group of the authors' tables is a pair.
SPAIR71K_FLIP_PAIRS: Mapping[str, tuple[tuple[int, int], ...]] = {
    "aeroplane": ((4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19), (20, 21)),
    "bicycle": ((2, 3), (6, 7), (9, 10)),
    "bird": ((1, 2), (4, 5), (7, 8), (10, 11), (12, 13), (14, 15)),
    "boat": ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)),
    "bottle": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
    "bus": ((0, 1), (2, 3), (5, 6), (10, 20), (13, 23), (11, 21), (14, 24), (12, 22), (15, 25), (16, 17), (26, 27),
            (18, 19), (28, 29)),
    "car": ((0, 1), (2, 3), (6, 7), (10, 20), (13, 23), (11, 21), (14, 24), (12, 22), (15, 25), (16, 17), (26, 27),
            (18, 19), (28, 29)),
    "cat": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12)),
    "chair": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)),
    "cow": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12), (15, 16), (17, 18), (19, 20)),
    "dog": ((0, 1), (2, 3), (4, 5), (9, 10), (11, 12)),
    "horse": ((0, 1), (2, 3), (4, 5), (6, 7), (10, 11), (12, 13), (16, 17), (18, 19)),
    "motorbike": ((0, 1), (2, 3)),
    "person": ((0, 1), (2, 3), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19)),
    "pottedplant": ((0, 2), (4, 5), (6, 8)),
    "sheep": ((0, 1), (2, 3), (4, 5), (6, 7), (9, 10), (11, 12), (15, 16), (17, 18), (19, 20)),
    "train": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17)),
    "tvmonitor": ((0, 2), (4, 6), (3, 7), (8, 10), (12, 14), (11, 15)),
}
#: AP-10K's mirror pairs (``AP10K_FLIP``, one table for every species), by corrbench's AP-10K keypoint ids (names).
AP10K_FLIP_PAIRS = (("left_eye", "right_eye"), ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
                    ("left_knee", "right_knee"), ("left_front_paw", "right_front_paw"),
                    ("left_back_paw", "right_back_paw"), ("left_hip", "right_hip"))
#: The ``pose_alignment`` option's tables.
TABLES = ("spair71k", "ap10k")


def flip_groups(table: str, category: str) -> tuple[tuple[str, ...], ...]:
    """The mirror groups (keypoint-id strings) of ``category`` in ``table``."""
    if table == "ap10k":
        return AP10K_FLIP_PAIRS
    if table == "spair71k" and category in SPAIR71K_FLIP_PAIRS:
        return tuple((str(a), str(b)) for a, b in SPAIR71K_FLIP_PAIRS[category])
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
