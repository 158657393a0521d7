"""SPair-71k's left/right keypoint pairs: which keypoint an instance's keypoint becomes when its image is mirrored.

A horizontal flip turns an object's left wheel into what looks like its right wheel: for a flipped image to be
annotated consistently, keypoint ``a`` of the flipped image is the mirror of keypoint ``b`` of the original,
and vice versa, for each pair ``(a, b)`` below; every other keypoint (nose, tail, a middle point) stays itself.
GeoAware-SC's pose-aware flip augmentation (``corrbench.train.data``, ``flip_views``) uses these tables.

Source: Junyi42/GeoAware-SC ``utils/utils_geoware.py`` ``SPAIR_FLIP_TRN`` (the table its trainer
``pck_train.py`` uses), keeping only its two-element lists (every list there has two elements; single
entries are keypoints without a mirror partner). Ids are SPair's keypoint ids as its files write them
(``kps_ids`` in the pair files, the ``kps`` keys of the image files), as strings.

Where GeoAware-SC has two tables: ``SPAIR_FLIP`` (its test-time table) numbers the keypoints of bus and
bicycle after dropping the ids its ``load_spair_data`` finds unused in the test split (bus 8 and 9,
bicycle 11 and 12), so its bus ids from 10 on are two lower; ``SPAIR_FLIP_TRN`` uses SPair's own ids, which
is what corrbench's pairs carry. For bicycle the two tables differ only in a keypoint without a partner.
"""

from __future__ import annotations

SPAIR_FLIP_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "aeroplane": ((4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15), (16, 17), (18, 19), (20, 21)),
    "bicycle": ((2, 3), (6, 7), (9, 10)),
    "bird": ((1, 2), (4, 5), (7, 8), (10, 11), (12, 13), (14, 15)),
    "boat": ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)),
    "bottle": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9)),
    "bus": ((0, 1), (2, 3), (5, 6), (10, 20), (13, 23), (11, 21), (14, 24), (12, 22), (15, 25), (16, 17),
            (26, 27), (18, 19), (28, 29)),
    "car": ((0, 1), (2, 3), (6, 7), (10, 20), (13, 23), (11, 21), (14, 24), (12, 22), (15, 25), (16, 17),
            (26, 27), (18, 19), (28, 29)),
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
}  # fmt: skip


def spair_flip_pairs(category: str) -> tuple[tuple[str, str], ...]:
    """The mirror pairs of a SPair-71k category, as keypoint-id strings; () for a category SPair lacks."""
    return tuple((str(a), str(b)) for a, b in SPAIR_FLIP_PAIRS.get(category, ()))
