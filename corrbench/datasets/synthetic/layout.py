"""The synthetic benchmark's format as data: categories, keypoint names, splits, file names, generator version.

A procedural semantic-correspondence dataset written in SPair-71k's exact on-disk layout.

``synthetic`` is the offline benchmark that tests and demos use; ``synthetic-unseen`` is its held-out
keypoint set, a miniature SPair-U (Jamais Vu layout). Nothing is downloaded: every image is drawn from a
seeded random stream, so the same seed and arguments give byte-identical files on one software stack
(the JPEG and PNG encoders come from Pillow; another libjpeg may encode the same pixels differently).

Keypoints. Each category has 9-14 named "seen" keypoints (part ends and joints, with left/right
distinctions) that go to ``ImageAnnotation`` / ``PairAnnotation``, and 4 "unseen" keypoints (part
midpoints and the like, never in the seen list) that go to ``ExtraImageAnnotation`` /
``ExtraPairAnnotation`` for the test split only. A mirrored instance keeps its semantic ids: its left paw
is still ``front_left_paw`` when it lands on the image's other side. In the canonical (unmirrored,
unrotated) frame every object faces +x; for the front-facing ``biped`` the figure's left is +x (the
viewer's right). Coordinates follow the project convention (integer = pixel centre, ``(0, 0)`` is the
centre of the top-left pixel) and are rounded to ints as SPair stores them. A keypoint is visible (not
``null``) only when its rounded pixel lies inside the image and at least half of that pixel shows the part
the keypoint belongs to (so neither clutter in front nor another part of the object covers it); visible
keypoints therefore always lie on the segmentation mask and inside the ``bndbox``.

Layout (see ``shared/design/DATASETS.md``)::

    JPEGImages/<cat>/<cat>_0001.jpg
    ImageAnnotation/<cat>/<cat>_0001.json        SPair image keys, kps over the seen keypoints
    Segmentation/<cat>/<cat>_0001.png             uint8, object = 1-based index in CATEGORIES, else 0
    PairAnnotation/{trn,val,test}/<000001>-<src>-<trg>:<cat>.json
    Layout/{large,small}/{trn,val,test}.txt       one pair stem a line
    ExtraImageAnnotation/<cat>/<img>.json         test images; kps over the unseen keypoints
    ExtraPairAnnotation/test/<stem>.json          test stems with >= 1 mutually visible unseen keypoint
    synthetic_manifest.json                       written last; see ``generate_synthetic``

Images are split disjointly per category (about half trn, a sixth val, a third test; at least 2 each) so
the test images are never seen in training. Pairs are distinct ordered pairs of two images of the same
category and split, drawn in a seeded order and kept when at least 3 seen keypoints are visible in both;
when a split has fewer such pairs than requested, all of them are written and the manifest says so.

Pair-level breakdown fields follow SPair-71k: ``mirror`` 1 when exactly one instance is mirrored;
``viewpoint_variation`` 0-2 (2 when the instances face opposite ways, else binned in-plane rotation
difference: < 15, < 35, more degrees); ``scale_variation`` 0-2 (ratio of object sizes < 1.25, < 1.6, more);
``truncation`` / ``occlusion`` 0 none, 1 source only, 2 target only, 3 both (SPair's four levels).
"""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError

GENERATOR_VERSION: int = 1  # bump whenever the output bytes for a given seed and arguments would change

CATEGORIES: tuple[str, ...] = ("quadruped", "bird", "biped", "lamp", "vehicle")
#: Each category's value in Segmentation/ and its manifest id: its 1-based index (0 is background).
SEGMENTATION_LABELS: dict[str, int] = {name: i + 1 for i, name in enumerate(CATEGORIES)}

SPLITS: tuple[str, ...] = ("trn", "val", "test")
DEFAULT_PAIRS: dict[str, int] = {"trn": 24, "val": 6, "test": 12}
MANIFEST_NAME = "synthetic_manifest.json"
SRC_DATABASE = "corrbench-synthetic"
JPEG_QUALITY = 95
MIN_PAIR_KEYPOINTS = 3  # seen keypoints visible in both images
MIN_IMAGE_KEYPOINTS = 4  # an instance with fewer visible seen keypoints is drawn again

# (seen, unseen) keypoint names per category; the index in each tuple is the SPair keypoint id.
KEYPOINTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "quadruped": (
        (
            "nose", "left_eye", "left_ear_tip", "right_ear_tip", "withers", "tail_base", "tail_tip",
            "front_left_knee", "front_left_paw", "front_right_paw", "back_left_knee", "back_left_paw",
            "back_right_paw",
        ),
        ("tail_mid", "back_mid", "belly_mid", "front_left_shin"),
    ),
    "bird": (
        (
            "beak_tip", "left_eye", "crown", "throat", "left_wrist", "left_wing_tip", "right_wing_tip",
            "tail_tip", "left_knee", "left_foot", "right_foot",
        ),
        ("nape", "breast", "rump", "left_wing_mid"),
    ),
    "biped": (
        (
            "head_top", "neck", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_hand",
            "right_hand", "left_hip", "right_hip", "left_knee", "right_knee", "left_foot", "right_foot",
        ),
        ("nose", "navel", "left_forearm_mid", "right_shin_mid"),
    ),
    "lamp": (
        (
            "base_back", "base_front", "switch", "base_joint", "elbow", "head_joint", "shade_upper_rim",
            "shade_lower_rim", "bulb",
        ),
        ("lower_arm_mid", "upper_arm_mid", "shade_center", "base_top_back"),
    ),
    "vehicle": (
        (
            "headlight", "taillight", "front_bumper", "rear_bumper", "windshield_base", "roof_front",
            "roof_rear", "rear_window_base", "front_left_wheel", "rear_left_wheel", "left_mirror",
            "antenna_tip",
        ),
        ("door_handle", "roof_mid", "hood_mid", "rocker_mid"),
    ),
}


def category_keypoints(category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(seen names, unseen names)`` of a category; position in each tuple = keypoint id."""
    try:
        return KEYPOINTS[category]
    except KeyError:
        raise ConfigError(
            f"unknown synthetic category {category!r}", hint=f"use one of {', '.join(CATEGORIES)}"
        ) from None


def flip_pairs(category: str) -> tuple[tuple[str, str], ...]:
    """Left/right partners among a category's seen keypoints, as keypoint-id strings (the pair files' ``kps_ids``).

    A mirrored instance keeps its semantic ids (module docstring), so in a horizontally flipped image the
    keypoint named ``..left..`` sits where the original's ``..right..`` was mirrored to: partners are the names
    that differ only by ``left`` <-> ``right``. A name without such a partner stays itself (pose-aware flip
    augmentation, ``corrbench.train.data``).
    """
    seen = category_keypoints(category)[0]
    index = {name: i for i, name in enumerate(seen)}
    return tuple((str(i), str(index[name.replace("left", "right")])) for i, name in enumerate(seen)
                 if "left" in name and name.replace("left", "right") in index)


def check_generation_arguments(seed, images_per_category, pairs_per_category) -> dict[str, int]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    if isinstance(images_per_category, bool) or not isinstance(images_per_category, (int, np.integer)) \
            or images_per_category < 6:
        raise ConfigError(
            f"images_per_category must be an integer >= 6, got {images_per_category!r}",
            hint="each category needs at least 2 images in each of trn, val and test",
        )
    pairs = dict(DEFAULT_PAIRS)
    if pairs_per_category is not None:
        unknown = set(pairs_per_category) - set(SPLITS)
        if unknown:
            raise ConfigError(f"pairs_per_category has unknown splits {sorted(unknown)}", hint="use trn, val, test")
        for k, v in pairs_per_category.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"pairs_per_category[{k!r}] must be a non-negative integer, got {v!r}")
            pairs[k] = int(v)
    return pairs
