"""Tiny SPair-71k and SPair-U datasets in the official on-disk formats, written by the tests (never real data).

``write_spair71k(data_root)`` writes ``<data root>/SPair-71k`` with three test pairs whose target boxes give
PCK thresholds of 80, 40 and 60 pixels, and one trn and one val pair. ``write_spair_u(data_root, layout)``
adds SPair-U annotations for two of the three test stems, in MARCO's arrangement (``marco``), as the zip
extracts (``zip``) or inside SPair-71k (``jamais-vu``).

``OffsetMatcher`` answers with the ground truth moved by ``(dx, dy)``: with the thresholds above, the PCK of a
benchmark follows by hand (see the tests).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from PIL import Image


# image name -> (category, (W, H))
IMAGES = {
    "2008_000001": ("cat", (120, 90)),
    "2008_000002": ("cat", (100, 80)),
    "2008_000003": ("cat", (90, 90)),
    "2009_000010": ("dog", (110, 100)),
    "2009_000011": ("dog", (80, 120)),
}
VOC_LABEL = {"cat": 8, "dog": 12}  # VOC class index + 1, the value SPair's Segmentation PNGs store

# The test pairs: (stem, src, trg, src_kps, trg_kps, trg_bndbox). Target boxes: sides 80, 40 and 60.
TEST_PAIRS = [
    ("000001-2008_000001-2008_000002:cat", "2008_000001", "2008_000002",
     [[20, 20], [40, 30], [60, 50]], [[30, 20], [50, 30], [70, 40]], [10, 5, 90, 45]),
    ("000002-2008_000002-2008_000003:cat", "2008_000002", "2008_000003",
     [[25, 25], [45, 35]], [[30, 40], [50, 50]], [20, 20, 60, 50]),
    ("000003-2009_000010-2009_000011:dog", "2009_000010", "2009_000011",
     [[10, 10], [20, 30], [40, 50], [60, 70]], [[15, 20], [25, 40], [45, 60], [55, 80]], [5, 10, 65, 60]),
]
TEST_THRESHOLDS = {stem: max(box[2] - box[0], box[3] - box[1]) for stem, *_, box in TEST_PAIRS}
TRN_STEM = "000004-2008_000003-2008_000001:cat"
VAL_STEM = "000005-2009_000011-2009_000010:dog"

# SPair-U's new keypoints for the first two test stems (the dog stem has none, so it is not an SPair-U pair).
SPAIR_U_PAIRS = {
    TEST_PAIRS[0][0]: ([[22, 24], [58, 44]], [[34, 26], [66, 36]], ["30", "31"]),
    TEST_PAIRS[1][0]: ([[35, 30]], [[40, 45]], ["30"]),
}


def write_jpeg(path: Path, size: tuple[int, int], colour=(90, 120, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=90)


def write_segmentation(path: Path, size: tuple[int, int], label: int) -> None:
    """A palette PNG like SPair's: 0 background, ``label`` inside a centred box."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("P", size, 0)
    mask.putpalette([0, 0, 0] + [128, 0, 0] * 255)
    w, h = size
    mask.paste(label, (w // 4, h // 4, 3 * w // 4, 3 * h // 4))
    mask.save(path)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def pair_json(stem: str, src: str, trg: str, src_kps, trg_kps, trg_bndbox, kps_ids=None, **overrides) -> dict:
    """A pair file with every key of the official release."""
    category = stem.rpartition(":")[2]
    (sw, sh), (tw, th) = IMAGES[src][1], IMAGES[trg][1]
    data = {
        "pair_id": int(stem.split("-")[0]),
        "src_imname": f"{src}.jpg",
        "trg_imname": f"{trg}.jpg",
        "src_imsize": [sw, sh, 3],
        "trg_imsize": [tw, th, 3],
        "src_bndbox": [2, 2, sw - 3, sh - 3],
        "trg_bndbox": list(trg_bndbox),
        "src_pose": "Frontal",
        "trg_pose": "Left",
        "src_kps": src_kps,
        "trg_kps": trg_kps,
        "kps_ids": kps_ids if kps_ids is not None else [str(i) for i in range(len(src_kps))],
        "category": category,
        "mirror": 0,
        "viewpoint_variation": 1,
        "scale_variation": 2,
        "truncation": 0,
        "occlusion": 3,
    }
    data.update(overrides)
    return data


def image_json(name: str, kps: dict[int, list[int] | None]) -> dict:
    """An image annotation with SPair's keys; ``kps`` over ids "0".."29" (null = not visible)."""
    category, (w, h) = IMAGES[name]
    return {
        "filename": f"{name}.jpg", "src_database": "PASCAL VOC 2012", "src_annotation": "", "src_image": "",
        "image_width": w, "image_height": h, "image_depth": 3, "category": category, "pose": "Frontal",
        "truncated": 0, "occluded": 0, "difficult": 0, "bndbox": [2, 2, w - 3, h - 3],
        "kps": {str(i): kps.get(i) for i in range(30)}, "azimuth_id": 0,
    }


def write_spair71k(data_root: Path) -> Path:
    root = Path(data_root) / "SPair-71k"
    for name, (category, size) in IMAGES.items():
        write_jpeg(root / "JPEGImages" / category / f"{name}.jpg", size)
        write_segmentation(root / "Segmentation" / category / f"{name}.png", size, VOC_LABEL[category])
    layout = root / "Layout" / "large"
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "test.txt").write_text("".join(f"{stem}\n" for stem, *_ in TEST_PAIRS))
    (layout / "trn.txt").write_text(f"{TRN_STEM}\n")
    (layout / "val.txt").write_text(f"{VAL_STEM}\n")
    for stem, src, trg, src_kps, trg_kps, box in TEST_PAIRS:
        write_json(root / "PairAnnotation" / "test" / f"{stem}.json", pair_json(stem, src, trg, src_kps, trg_kps, box))
    write_json(root / "PairAnnotation" / "trn" / f"{TRN_STEM}.json",
               pair_json(TRN_STEM, "2008_000003", "2008_000001", [[10, 10]], [[20, 20]], [0, 0, 50, 50]))
    write_json(root / "PairAnnotation" / "val" / f"{VAL_STEM}.json",
               pair_json(VAL_STEM, "2009_000011", "2009_000010", [[10, 10]], [[20, 20]], [0, 0, 50, 50]))
    return root


def spair_u_files() -> dict[str, dict]:
    """Relative path -> JSON of SPair-U's annotations, as the release arranges them (PairAnnotation/test,
    ImageAnnotation/<cat>)."""
    files: dict[str, dict] = {}
    for stem, src, trg, _, _, box in TEST_PAIRS:
        if stem not in SPAIR_U_PAIRS:
            continue
        src_kps, trg_kps, ids = SPAIR_U_PAIRS[stem]
        files[f"PairAnnotation/test/{stem}.json"] = pair_json(stem, src, trg, src_kps, trg_kps, box, kps_ids=ids)
        category = stem.rpartition(":")[2]
        for name, kps in ((src, src_kps), (trg, trg_kps)):
            files[f"ImageAnnotation/{category}/{name}.json"] = image_json(name, {int(i): k for i, k in zip(ids, kps)})
    return files


def write_spair_u(data_root: Path, layout: str) -> Path:
    """SPair-U annotations in one of the arrangements in use; returns the folder holding the pair files."""
    data_root = Path(data_root)
    bases = {
        "marco": data_root / "SPair-U",
        "zip": data_root / "SPair-U" / "datasets" / "SPair-U",
        "jamais-vu": data_root / "SPair-71k",
        "jamais-vu-in-spair-u": data_root / "SPair-U",  # Jamais Vu's folder names, extracted where its README says
    }
    base = bases[layout]
    extra = layout.startswith("jamais-vu")
    for relative, data in spair_u_files().items():
        if extra:
            relative = "Extra" + relative  # ExtraPairAnnotation/test, ExtraImageAnnotation/<cat>
        write_json(base / relative, data)
    return base / ("ExtraPairAnnotation" if extra else "PairAnnotation") / "test"


def write_spair_u_zip(path: Path) -> Path:
    """A zip shaped like the release: its content under datasets/SPair-U/."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for relative, data in spair_u_files().items():
            archive.writestr(f"datasets/SPair-U/{relative}", json.dumps(data))
    return path
