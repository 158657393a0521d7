"""The crafted inputs of tests/data/geoaware_geosc_golden.json, shared by the script that runs GeoAware-SC's code on
them (``make_geosc_loss_golden.py``) and the test that runs corrbench's (tests/test_geosc_loss_parity.py).

Loss cases: four random feature maps on GeoAware-SC's fixed 60 x 60 grid (its ``Correlation2Displacement`` is
built for 60 cells), drawn from a torch CPU generator so every machine rebuilds the same values, and keypoints of
SPair's ``cat`` (15 ids; rows 15-29 padding, as their loader pads to 30) on their 840-px canvas.

Flip case: SPair-71k-layout annotation files of two ``cat`` images (one landscape, one portrait; sizes whose
centred padding on the 840 canvas is symmetric, so their ``840 - x`` is exactly ``W - x`` in the image).
"""

from __future__ import annotations

import numpy as np
import torch

GRID = 60
CANVAS = 840
CHANNELS = 6
CATEGORY = "cat"
NUM_IDS = 15  # SPair's cat keypoints
FEATURE_SEED = 5
KEYPOINT_SEED = 6
NOISE_SEED = 7
THRESHOLDS = (9.5, 14.25)  # source and target box sides in cells (their all_thresholds[...] * scale_factor)


def feature_maps() -> dict[str, torch.Tensor]:
    """``(1, C, 60, 60)`` raw maps of the source, target and their mirrored images."""
    generator = torch.Generator().manual_seed(FEATURE_SEED)
    return {name: torch.randn(1, CHANNELS, GRID, GRID, generator=generator)
            for name in ("src", "trg", "src_flip", "trg_flip")}


def keypoints() -> np.ndarray:
    """``(2, 30, 3)`` float32 ``(x, y, visible)`` on the 840 canvas; invisible rows zero, as their loader writes."""
    rng = np.random.default_rng(KEYPOINT_SEED)
    out = np.zeros((2, 30, 3), dtype=np.float32)
    for side in range(2):
        visible = rng.random(NUM_IDS) < 0.75
        points = rng.uniform(1.0, CANVAS - 1.0, size=(NUM_IDS, 2)).astype(np.float32)  # 840 - x stays inside
        out[side, :NUM_IDS, :2] = points * visible[:, None]
        out[side, :NUM_IDS, 2] = visible
    return out


# --- flip case: annotation files --------------------------------------------------------------------------

# name: ((W, H), {keypoint id: [x, y]})
FLIP_IMAGES = {
    "2010_000001": ((420, 300), {0: [100, 80], 1: [140, 82], 2: [90, 40], 3: [150, 41], 4: [110, 120],
                                 5: [130, 121], 6: [118, 150], 7: [125, 152], 8: [200, 200], 9: [60, 280],
                                 10: [300, 281], 13: [250, 150], 14: [380, 140]}),
    "2010_000002": ((300, 420), {0: [50, 60], 1: [90, 62], 2: [40, 20], 3: [100, 21], 4: [60, 100],
                                 5: [80, 101], 6: [68, 130], 7: [75, 131], 8: [150, 250], 9: [30, 400],
                                 11: [200, 402], 12: [240, 404], 13: [180, 300], 14: [280, 290]}),
}
FLIP_PAIR = ("2010_000001", "2010_000002")
FLIP_BOXES = ([40, 20, 400, 290], [20, 10, 290, 410])


def flip_files() -> dict[str, dict]:
    """Relative path -> JSON of the SPair-layout files: both image annotations (30 ``kps`` keys, ``null`` where
    not annotated, as SPair writes them) and the trn pair file (mutually visible ids only, ascending)."""
    files: dict[str, dict] = {}
    for name, ((w, h), points) in FLIP_IMAGES.items():
        files[f"ImageAnnotation/{CATEGORY}/{name}.json"] = {
            "filename": f"{name}.jpg", "category": CATEGORY, "image_width": w, "image_height": h, "image_depth": 3,
            "kps": {str(i): points.get(i) for i in range(30)},
        }
    src, trg = FLIP_PAIR
    ids = sorted(set(FLIP_IMAGES[src][1]) & set(FLIP_IMAGES[trg][1]))
    files[f"PairAnnotation/trn/000001-{src}-{trg}:{CATEGORY}.json"] = {
        "pair_id": 1, "src_imname": f"{src}.jpg", "trg_imname": f"{trg}.jpg", "category": CATEGORY,
        "src_imsize": [*FLIP_IMAGES[src][0], 3], "trg_imsize": [*FLIP_IMAGES[trg][0], 3],
        "src_bndbox": FLIP_BOXES[0], "trg_bndbox": FLIP_BOXES[1],
        "kps_ids": ids, "src_kps": [FLIP_IMAGES[src][1][i] for i in ids],
        "trg_kps": [FLIP_IMAGES[trg][1][i] for i in ids],
    }
    return files
