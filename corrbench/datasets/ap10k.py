"""Reader of AP-10K correspondence pair folders (Zhang et al. 2024, GeoAware-SC's benchmark on AP-10K).

Reads the folder ``corrbench build-ap10k`` writes (``corrbench.datasets.ap10k_build``), and equally the folders
GeoAware-SC's ``prepare_ap10k.ipynb`` and MARCO's ``scripts/preprocess_ap10k.py`` write (same layout):

    ImageAnnotation/<family>/<species>/<id>.json     an image's COCO annotation merged with its image record:
                                                     keypoints (17 x [x, y, v]), bbox [x, y, w, h], width,
                                                     height, name (species), supercategory (family)
    JPEGImages/<family>/<species>/<id>.jpg
    PairAnnotation/<folder>/<src>-<trg>:<category>.json    {"src_json_path": ..., "trg_json_path": ...}

``setting`` picks the folder: ``intra-species`` reads ``<split>`` (trn, val, test; category = species),
``cross-species`` reads ``<split>_cross_species`` (val, test; category = family), ``cross-family`` reads
``<split>_cross_family`` (val, test; category = "all"). Pairs are listed by category, then by file name, as
both reference readers do (sorted categories, each ``sorted(glob("*:<category>.json"))``).

Path fields: corrbench's builder writes them relative to the dataset folder, GeoAware-SC relative to its
repository (``data/ap-10k/ImageAnnotation/...``) and MARCO absolute (``/home/.../data/ap-10k/ImageAnnotation/...``).
This reader keeps the part from the last ``ImageAnnotation`` component on and resolves it under the dataset
folder, so a folder built elsewhere can be moved here. The image is the annotation's path with
``ImageAnnotation`` -> ``JPEGImages`` and ``.json`` -> ``.jpg`` (the references' string replacement).

Keypoints: all 17 rows are kept, row-aligned, named by AP-10K's keypoint names; a keypoint is visible when
``v > 0`` (GeoAware-SC, MARCO: they divide v by 2 and test > 0) or, with ``visibility="v==2"``, when ``v == 2``
(the unified benchmark, Visual-AI/Semantic-Correspondence ``dataset/ap10k.py``). Only keypoints visible in
both images are scored; PCK-dagger's candidates are the target's visible keypoints. A pair without any
keypoint visible in both is reported as skipped ("no valid keypoint"; MARCO drops such pairs silently).

Box: COCO ``bbox`` ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``, so the ``bbox`` threshold is
``max(w, h)``, as GeoAware-SC and MARCO compute it (``max(bbox[2], bbox[3])``). Note that MARCO multiplies it by
``size / max(W, H)`` while stretching images to a square, which corrbench's ``square:<S>`` frame (per-axis
scaled box) does not reproduce; the default ``original`` frame measures where GeoAware-SC's uniform resize does.

Training (``trn``) skips argali sheep, black bear and king cheetah, as both reference trainers do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..metrics import SKIP_NO_VALID
from ..types import Pair
from .ap10k_build import (
    BUILT_FOLDER,
    CROSS_FAMILY_SUFFIX,
    CROSS_SPECIES_SUFFIX,
    CROWD_LIST_URL,
    DRIVE_ID,
    IMAGE_DIR,
    JPEG_DIR,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    PAIR_DIR,
    RAW_ANNOTATION_FILES,
    RAW_FOLDER,
    TRAINING_EXCLUDED_SPECIES,
)
from .base import DatasetAdapter, DatasetSource, PairSet, SkippedPair

SETTINGS = {"intra-species": "", "cross-species": CROSS_SPECIES_SUFFIX, "cross-family": CROSS_FAMILY_SUFFIX}
SPLITS = {"intra-species": ("trn", "val", "test"), "cross-species": ("val", "test"), "cross-family": ("val", "test")}
VISIBILITY_RULES = ("v>0", "v==2")
_IMAGE_FIELDS = ("keypoints", "bbox", "width", "height")

RAW_SOURCE = DatasetSource(
    name="AP-10K (raw download, built into the benchmark by `corrbench build-ap10k`)",
    url=f"https://drive.google.com/file/d/{DRIVE_ID}",
    filename="ap-10k.zip",
    kind="archive",
    destination=RAW_FOLDER,
    provides=f"{RAW_FOLDER}/annotations/{RAW_ANNOTATION_FILES[0]}",
    manual=(
        f"1) download ap-10k.zip from Google Drive (file id {DRIVE_ID}; in a browser at "
        f"https://drive.google.com/file/d/{DRIVE_ID}, or `pip install gdown && gdown {DRIVE_ID}`); "
        f"2) unzip it and move the contents of its ap-10k/ folder (annotations/ and data/) into "
        f"<data root>/{RAW_FOLDER}/, so that <data root>/{RAW_FOLDER}/annotations/{RAW_ANNOTATION_FILES[0]} exists; "
        f"3) optional, to drop exactly GeoAware-SC's crowd images: download {CROWD_LIST_URL}; "
        f"4) run `corrbench build-ap10k` (add `--crowd-list ap-10k_is_crowd.txt` for step 3), which writes "
        f"<data root>/{BUILT_FOLDER}/"
    ),
)


class AP10K(DatasetAdapter):
    """AP-10K pairs: ``setting`` (intra-species | cross-species | cross-family), ``visibility`` (v>0 | v==2).

    ``subset`` is a comma-separated list of categories (species, families, or "all").
    """

    name = "AP-10K"
    instructions = (
        f"AP-10K's correspondence pairs are built from the raw AP-10K download: put it at <data root>/{RAW_FOLDER} "
        f"and run `corrbench build-ap10k`, which writes <data root>/{BUILT_FOLDER}. A folder built by GeoAware-SC's "
        f"prepare_ap10k.ipynb or MARCO's scripts/preprocess_ap10k.py (their data/ap-10k) is read as well: move or "
        f"link it to <data root>/{BUILT_FOLDER}"
    )
    sources = (RAW_SOURCE,)

    def __init__(self, root: Path, *, setting: str = "intra-species", visibility: str = "v>0", **options: Any):
        super().__init__(root, **options)
        if setting not in SETTINGS:
            raise ConfigError(f"unknown AP-10K setting {setting!r}", hint=f"use one of {', '.join(SETTINGS)}")
        if visibility not in VISIBILITY_RULES:
            raise ConfigError(f"unknown AP-10K visibility rule {visibility!r}",
                              hint="use 'v>0' (GeoAware-SC, MARCO) or 'v==2' (the unified benchmark)")
        self.setting, self.visibility = setting, visibility

    def pair_folder(self, split: str) -> Path:
        if split not in SPLITS[self.setting]:
            raise ConfigError(f"AP-10K {self.setting} has no split {split!r}",
                              hint=f"use one of {', '.join(SPLITS[self.setting])}")
        return self.root / PAIR_DIR / f"{split}{SETTINGS[self.setting]}"

    def is_available(self) -> bool:
        return (self.root / IMAGE_DIR).is_dir() and self.pair_folder("test").is_dir()

    def missing_data_hint(self, missing: list[DatasetSource], download: bool) -> str:
        hint = super().missing_data_hint(missing, download)
        if not missing and RAW_SOURCE.is_present(self.data_root):
            hint = (f"the raw AP-10K download is at {self.data_root / RAW_FOLDER} but the benchmark is not built: "
                    f"run `corrbench build-ap10k --data-root {self.data_root}`\n  " + hint)
        return hint

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        folder = self.pair_folder(split)
        if not folder.is_dir():
            raise DataError(f"AP-10K pair folder not found: {folder}",
                            hint="build the benchmark with `corrbench build-ap10k` (it writes every split)")
        wanted = None if subset is None else {c.strip() for c in subset.split(",") if c.strip()}
        excluded = set(TRAINING_EXCLUDED_SPECIES) if split == "trn" and self.setting == "intra-species" else set()
        listed = []
        for path in folder.glob("*.json"):
            category = path.stem.rpartition(":")[2]
            if (wanted is None or category in wanted) and category not in excluded:
                listed.append((category, path.name, path))
        result = PairSet(pairs=[])
        images: dict[Path, dict[str, Any] | tuple[str, Path, str]] = {}  # each annotation file read once
        for category, _, path in sorted(listed):
            read = self._read_pair(path, category, images, result.skipped)
            if read is not None:
                result.add(*read)
        return result

    # -------------------------------------------------------------------------------------------- reading

    def _read_pair(self, path: Path, category: str, images: dict,
                   skipped: list[SkippedPair]) -> tuple[Pair, Path, Path] | None:
        """The pair of one pair file and the image annotations its keypoints come from, or None (skipped)."""
        stem = path.stem
        if ":" not in stem:
            self.skip(skipped, stem, "malformed pair file", path, "the name must be <src>-<trg>:<category>.json")
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.skip(skipped, stem, "malformed pair file", path, f"not valid JSON ({exc})")
            return None
        ends, files = {}, {}
        for end in ("src", "trg"):
            value = data.get(f"{end}_json_path") if isinstance(data, dict) else None
            json_path = self._resolve(value)
            if json_path is None:
                self.skip(skipped, stem, "malformed pair file", path,
                          f"{end}_json_path must be a path containing {IMAGE_DIR}/, got {value!r:.120}")
                return None
            record = images.get(json_path)
            if record is None:
                record = images[json_path] = self._read_image(json_path)
            if isinstance(record, tuple):
                reason, file, detail = record
                self.skip(skipped, stem, reason, file, f"{detail} (named by {path})")
                return None
            ends[end], files[end] = record, json_path
        src, trg = ends["src"], ends["trg"]
        if not (src["visible"] & trg["visible"]).any():
            # not malformed (v==2 can empty a pair the builder kept under v > 0), so never an error in strict mode
            detail = f"no keypoint is visible ({self.visibility}) in both images"
            skipped.append(SkippedPair(stem, SKIP_NO_VALID, str(path), detail))
            return None
        pair = Pair(
            pair_id=stem, category=category,
            src_image=src["image"], trg_image=trg["image"],
            src_size=src["size"], trg_size=trg["size"],
            src_kps=src["kps"], trg_kps=trg["kps"],
            src_visible=src["visible"], trg_visible=trg["visible"],
            src_bbox=src["bbox"], trg_bbox=trg["bbox"],
            kp_ids=KEYPOINT_NAMES,
            meta={"src_species": src["species"], "trg_species": trg["species"],
                  "src_family": src["family"], "trg_family": trg["family"]},
        )
        return pair, files["src"], files["trg"]

    def _resolve(self, value: Any) -> Path | None:
        """The annotation file under this dataset folder, from a relative, repository or absolute path."""
        if not isinstance(value, str):
            return None
        parts = value.replace("\\", "/").split("/")
        if IMAGE_DIR not in parts:
            return None
        start = len(parts) - 1 - parts[::-1].index(IMAGE_DIR)
        rest = [p for p in parts[start + 1:] if p]
        if len(rest) < 1 or any(p in (".", "..") for p in rest):
            return None
        return self.root.joinpath(IMAGE_DIR, *rest)

    def _read_image(self, json_path: Path) -> dict[str, Any] | tuple[str, Path, str]:
        """The parts of an image annotation a Pair needs, or (reason, file, detail) when it cannot be used."""
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "missing image annotation", json_path, "the file does not exist"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return "malformed image annotation", json_path, f"not valid JSON ({exc})"
        if not isinstance(data, dict) or any(key not in data for key in _IMAGE_FIELDS):
            missing = [k for k in _IMAGE_FIELDS if not isinstance(data, dict) or k not in data]
            return "malformed image annotation", json_path, f"missing field(s) {', '.join(missing)}"
        try:
            keypoints = np.asarray(data["keypoints"], dtype=np.float64)
            x, y, w, h = (float(v) for v in data["bbox"])
            size = (int(data["width"]), int(data["height"]))
        except (TypeError, ValueError) as exc:
            detail = f"keypoints, bbox [x, y, w, h], width or height malformed ({exc})"
            return "malformed image annotation", json_path, detail
        if keypoints.shape != (3 * NUM_KEYPOINTS,):
            detail = f"'keypoints' must hold {NUM_KEYPOINTS} x 3 = {3 * NUM_KEYPOINTS} numbers, got {keypoints.size}"
            return "malformed image annotation", json_path, detail
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0 and min(size) > 0):
            detail = f"bbox [x, y, w, h] = {data['bbox']} or size {size} is empty or not finite"
            return "malformed image annotation", json_path, detail
        keypoints = keypoints.reshape(NUM_KEYPOINTS, 3)
        v = keypoints[:, 2]
        image = self.root.joinpath(JPEG_DIR, *json_path.relative_to(self.root / IMAGE_DIR).with_suffix(".jpg").parts)
        return {
            "image": image, "size": size, "kps": keypoints[:, :2],
            "visible": v > 0 if self.visibility == "v>0" else v == 2,
            "bbox": np.array([x, y, x + w, y + h]),
            "species": str(data.get("name", json_path.parent.name)),
            "family": str(data.get("supercategory", json_path.parent.parent.name)),
        }
