"""Tiny PF-PASCAL and PF-WILLOW datasets in the official on-disk formats, written by the tests (never real data).

PF-PASCAL (``write_pf_pascal``): JPEGs, ``Annotations/<class>/<img>.mat`` written with ``scipy.io.savemat``
(``kps`` K x 2 with NaN rows for missing keypoints, ``bbox`` 1 x 4), and the pair list of the test split in
either convention: SD4Match's ``source_image,target_image,class`` (``sd4match``, placed as the zip extracts,
``pf-pascal_image_pairs/test_pairs.csv``) or CNNGeometric's ``...,XA,YA,XB,YB`` (``cnngeometric``, placed where
GeoAware-SC puts it, ``PF-dataset-PASCAL/test_pairs_pf_pascal.csv``). Target image sides give ``img``
thresholds of 120, 160 and 60 pixels.

PF-WILLOW (``write_pf_willow``): PNGs in ``PF-dataset/<class>/`` and ``test_pairs.csv`` (imageA, imageB, 10
source x, 10 source y, 10 target x, 10 target y), or the same rows as CNNGeometric's ``test_pairs_pf.csv`` beside
or inside ``PF-dataset/``. The target keypoints span boxes of 80 and 40 pixels
(``bbox-kp``); with the padding corner at -1 the ``bbox`` lengths are 101 and 71.
"""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

NAN = float("nan")

# PF-PASCAL -------------------------------------------------------------------------------------------------
PASCAL_IMAGES = {  # name -> (W, H)
    "2007_000032": (100, 80), "2008_000033": (120, 60),
    "2009_000100": (90, 90), "2009_000101": (80, 160),
    "2010_000200": (60, 50), "2010_000201": (60, 40),
}
# (class index (1-based VOC), class name, src, trg, src kps (K x 2, NaN = missing), trg kps)
PASCAL_PAIRS = [
    (1, "aeroplane", "2007_000032", "2008_000033",
     [[10, 10], [NAN, NAN], [50, 40], [70, 20]], [[20, 15], [30, 30], [60, 40], [NAN, NAN]]),
    (8, "cat", "2009_000100", "2009_000101",
     [[10, 20], [30, 40], [50, 60]], [[20, 30], [40, 80], [60, 120]]),
    (12, "dog", "2010_000200", "2010_000201",
     [[10, 10], [40, 30]], [[15, 10], [45, 25]]),
]
PASCAL_VALID_ROWS = [(0, 2), (0, 1, 2), (0, 1)]  # rows finite in both images
PASCAL_THRESHOLDS = [120, 160, 60]  # max(W, H) of each target image


def write_image(path: Path, size: tuple[int, int], colour=(120, 90, 60)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def write_mat(path: Path, kps, bbox) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, {"kps": np.asarray(kps, dtype=np.float64), "bbox": np.asarray([bbox], dtype=np.float64),
                   "class": "x"})


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def image_entry(name: str) -> str:
    return f"PF-dataset-PASCAL/JPEGImages/{name}.jpg"


def sd4match_rows(with_flip: bool = False) -> list[list]:
    return [[image_entry(s), image_entry(t), c] + ([1] if with_flip else []) for c, _, s, t, _, _ in PASCAL_PAIRS]


def cnngeometric_rows() -> list[list]:
    rows = []
    for (c, _, s, t, src, trg), valid in zip(PASCAL_PAIRS, PASCAL_VALID_ROWS):
        src, trg = np.asarray(src)[list(valid)], np.asarray(trg)[list(valid)]

        def join(values):
            return ";".join(f"{v:g}" for v in values)

        rows.append([image_entry(s), image_entry(t), c,
                     join(src[:, 0]), join(src[:, 1]), join(trg[:, 0]), join(trg[:, 1])])
    return rows


SD4MATCH_HEADER = ["source_image", "target_image", "class"]
CNNGEOMETRIC_HEADER = ["source_image", "target_image", "class", "XA", "YA", "XB", "YB"]


def write_pf_pascal(data_root: Path, convention: str = "sd4match") -> Path:
    root = Path(data_root) / "pf-pascal"
    for name, size in PASCAL_IMAGES.items():
        write_image(root / "PF-dataset-PASCAL" / "JPEGImages" / f"{name}.jpg", size)
    for _, category, src, trg, src_kps, trg_kps in PASCAL_PAIRS:
        for name, kps in ((src, src_kps), (trg, trg_kps)):
            w, h = PASCAL_IMAGES[name]
            write_mat(root / "PF-dataset-PASCAL" / "Annotations" / category / f"{name}.mat", kps, [1, 2, w - 2, h - 3])
    if convention == "sd4match":
        write_csv(root / "pf-pascal_image_pairs" / "test_pairs.csv", SD4MATCH_HEADER, sd4match_rows())
        write_csv(root / "pf-pascal_image_pairs" / "trn_pairs.csv", SD4MATCH_HEADER + ["flip"], sd4match_rows(True))
    else:
        write_csv(root / "PF-dataset-PASCAL" / "test_pairs_pf_pascal.csv", CNNGEOMETRIC_HEADER, cnngeometric_rows())
    return root


# PF-WILLOW -------------------------------------------------------------------------------------------------
WILLOW_IMAGES = {  # "<class>/<name>" -> (W, H)
    "car(G)/Cars_001a": (100, 80), "car(G)/Cars_002a": (120, 90),
    "duck(S)/Duck_001": (90, 70), "duck(S)/Duck_002": (80, 75),
}


def _two_rows(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """10 keypoints spanning exactly the box [x0, y0, x1, y1]: 5 evenly spaced on its top and bottom edges
    (at least 10 pixels apart, so a 5-pixel error never lands nearer to another keypoint)."""
    xs = np.linspace(x0, x1, 5)
    return np.concatenate([np.stack([xs, np.full(5, y0)], 1), np.stack([xs, np.full(5, y1)], 1)])


# (src, trg, src kps (10 x 2), trg kps (10 x 2))
WILLOW_PAIRS = [
    ("car(G)/Cars_001a", "car(G)/Cars_002a", _two_rows(10, 10, 80, 60), _two_rows(20, 10, 100, 70)),  # trg box 80 x 60
    ("duck(S)/Duck_001", "duck(S)/Duck_002", _two_rows(20, 20, 60, 50), _two_rows(30, 40, 70, 60)),  # trg box 40 x 20
]
WILLOW_BBOX_KP_THRESHOLDS = [80, 40]
WILLOW_PADDED_THRESHOLDS = [101, 71]  # max(max x, max y) + 1
WILLOW_HEADER = (["imageA", "imageB"] + [f"XA{i}" for i in range(1, 11)] + [f"YA{i}" for i in range(1, 11)]
                 + [f"XB{i}" for i in range(1, 11)] + [f"YB{i}" for i in range(1, 11)])


def willow_row(src: str, trg: str, src_kps: np.ndarray, trg_kps: np.ndarray) -> list:
    return ([f"PF-dataset/{src}.png", f"PF-dataset/{trg}.png"] + list(src_kps[:, 0]) + list(src_kps[:, 1])
            + list(trg_kps[:, 0]) + list(trg_kps[:, 1]))


# where each arrangement keeps the pair list: SD4Match's copy, CNNGeometric's file beside PF-dataset/ (its eval
# scripts) or inside it (its download_datasets.py)
WILLOW_PAIR_LISTS = {"sd4match": "test_pairs.csv", "cnngeometric": "test_pairs_pf.csv",
                     "cnngeometric-download": "PF-dataset/test_pairs_pf.csv"}


def write_pf_willow(data_root: Path, layout: str = "sd4match") -> Path:
    root = Path(data_root) / "pf-willow"
    for name, size in WILLOW_IMAGES.items():
        write_image(root / "PF-dataset" / f"{name}.png", size)
    write_csv(root / WILLOW_PAIR_LISTS[layout], WILLOW_HEADER, [willow_row(*p) for p in WILLOW_PAIRS])
    return root


# Release-shaped archives (for the download seam) -----------------------------------------------------------
def zip_folder(folder: Path, archive: Path, prefix: str) -> Path:
    """Zip every file under ``folder`` as ``<prefix>/<relative path>``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return archive
