"""The crafted SPair-71k-layout pairs of tests/data/geoaware_pck_golden.json and their predictions.

Most predictions sit exactly at alpha x T from their target keypoint (offsets such as (3, 4), (6, 8) against boxes
of side 100), the ties on which GeoAware-SC's float32 alphas and strict ``<`` decide differently from ``<=``.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# name: (category, (width, height), {keypoint id: [x, y]})
IMAGES = {
    "2008_000001": ("cat", (840, 600), {0: [150, 150], 1: [160, 150], 2: [400, 300], 3: [500, 400], 4: [600, 500],
                                        5: [700, 100]}),
    "2008_000002": ("cat", (420, 300), {0: [50, 60], 1: [60, 60], 2: [200, 150], 3: [250, 200], 4: [300, 250]}),
    "2008_000003": ("cat", (500, 375), {0: [123, 77], 1: [200, 100], 2: [301, 250], 3: [50, 300], 5: [444, 111]}),
    "2009_000010": ("dog", (300, 420), {0: [100, 100], 1: [150, 200], 2: [200, 300], 3: [250, 400]}),
    "2009_000011": ("dog", (333, 500), {0: [40, 50], 1: [120, 210], 2: [222, 333], 3: [300, 480], 4: [10, 10]}),
}

# (pair number, source, target, target box [x1, y1, x2, y2], {keypoint id: prediction minus target keypoint})
PAIRS = [
    (1, "2008_000002", "2008_000001", [100, 100, 200, 180],
     {0: [7, 0], 1: [0, 1], 2: [3, 4], 3: [6, 8], 4: [0, 0.5]}),
    (2, "2008_000001", "2008_000002", [50, 40, 100, 90],
     {0: [0, 0.5], 1: [1.5, 2], 2: [3, 4], 3: [4.5, 6], 4: [30, 40]}),
    (3, "2008_000001", "2008_000003", [10, 20, 110, 95],
     {0: [0, 1], 1: [3, 4], 2: [6, 8], 3: [-0.6, 0.8], 5: [5, 0]}),
    (4, "2009_000011", "2009_000010", [20, 30, 120, 90],
     {0: [0, 1], 1: [3, 4], 2: [6, 8], 3: [8, 6]}),
    (5, "2009_000010", "2009_000011", [30, 40, 130, 150],
     {0: [0, 1.1], 1: [3.3, 4.4], 2: [6.6, 8.8], 3: [0, -5.5]}),
]

IMAGE_COLOUR = (90, 120, 150)  # any colour: their network is replaced, the pixels are never read for scores


def pair_stem(number: int, src: str, trg: str) -> str:
    return f"{number:06d}-{src}-{trg}:{IMAGES[src][0]}"


def pairs() -> list[dict]:
    """Per pair: stem, category, src, trg, box, mutually visible ids (ascending), keypoints and predictions."""
    out = []
    for number, src, trg, box, offsets in PAIRS:
        category = IMAGES[src][0]
        ids = sorted(set(IMAGES[src][2]) & set(IMAGES[trg][2]))
        assert ids == sorted(offsets), f"pair {number}: offsets must cover exactly the mutually visible ids {ids}"
        trg_kps = [IMAGES[trg][2][i] for i in ids]
        predictions = [[round(kp[0] + offsets[i][0], 4), round(kp[1] + offsets[i][1], 4)]
                       for i, kp in zip(ids, trg_kps)]
        out.append(dict(stem=pair_stem(number, src, trg), category=category, src=src, trg=trg, box=box, ids=ids,
                        src_kps=[IMAGES[src][2][i] for i in ids], trg_kps=trg_kps, predictions=predictions))
    return out


def write_spair_folder(root: Path) -> None:
    """The SPair-71k files that GeoAware-SC's loader reads (JPEGImages, ImageAnnotation, PairAnnotation, Layout)."""
    for name, (category, (w, h), kps) in IMAGES.items():
        (root / "JPEGImages" / category).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), IMAGE_COLOUR).save(root / "JPEGImages" / category / f"{name}.jpg")
        (root / "ImageAnnotation" / category).mkdir(parents=True, exist_ok=True)
        (root / "ImageAnnotation" / category / f"{name}.json").write_text(json.dumps({
            "filename": f"{name}.jpg", "image_width": w, "image_height": h, "category": category,
            "bndbox": [0, 0, w - 1, h - 1], "kps": {str(i): kps.get(i) for i in range(30)}}))
    (root / "PairAnnotation" / "test").mkdir(parents=True, exist_ok=True)
    (root / "Layout" / "large").mkdir(parents=True, exist_ok=True)
    for p in pairs():
        sw, sh = IMAGES[p["src"]][1]
        tw, th = IMAGES[p["trg"]][1]
        (root / "PairAnnotation" / "test" / f"{p['stem']}.json").write_text(json.dumps({
            "pair_id": int(p["stem"][:6]), "src_imname": f"{p['src']}.jpg", "trg_imname": f"{p['trg']}.jpg",
            "src_imsize": [sw, sh, 3], "trg_imsize": [tw, th, 3], "src_bndbox": [0, 0, sw - 1, sh - 1],
            "trg_bndbox": p["box"], "src_pose": "Frontal", "trg_pose": "Frontal", "src_kps": p["src_kps"],
            "trg_kps": p["trg_kps"], "kps_ids": [str(i) for i in p["ids"]], "category": p["category"], "mirror": 0,
            "viewpoint_variation": 0, "scale_variation": 0, "truncation": 0, "occlusion": 0}))
    (root / "Layout" / "large" / "test.txt").write_text("".join(p["stem"] + "\n" for p in pairs()))
    (root / "Layout" / "large" / "trn.txt").write_text("")
    (root / "Layout" / "large" / "val.txt").write_text("")


def predictions_by_pair() -> list[dict]:
    """The predictions in the form authors_eval.py reads: per pair, keyed by keypoint id."""
    return [{"src": p["src"], "trg": p["trg"], "trg_size": list(IMAGES[p["trg"]][1]),
             "predictions": {str(i): point for i, point in zip(p["ids"], p["predictions"])}} for p in pairs()]


def golden_images() -> dict:
    return {name: {"category": category, "size": list(size), "kps": {str(k): v for k, v in kps.items()}}
            for name, (category, size, kps) in IMAGES.items()}


def golden_pairs() -> list[dict]:
    return [{k: p[k] for k in ("stem", "category", "src", "trg", "box", "ids", "predictions")} for p in pairs()]
