"""Reader of AP-10K correspondence pair folders (Zhang et al. 2024, GeoAware-SC's benchmark on AP-10K).

Reads the folder ``corrbench build-ap10k`` writes (``corrbench.datasets.ap10k.build``), and equally the folders
GeoAware-SC's ``prepare_ap10k.ipynb`` and MARCO's ``scripts/preprocess_ap10k.py`` write (same layout, names in
``layout.py``):

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
``max(w, h)``, as GeoAware-SC and MARCO compute it (``max(bbox[2], bbox[3])``).

Frame: neither reference stretches AP-10K images, so the default ``original`` frame is the one to compare with
both (``square:<S>`` is a stretch, MARCO's frame for SPair-71k and MP-100, not for AP-10K):

- GeoAware-SC (``utils/utils_dataset.py``): longest side to its resolution, centred padding, keypoints and
  threshold scaled by the same factor: uniform, so the original frame gives its verdicts.
- MARCO (``datasets/ap10k.py`` on the base class's ``use_original_imsize=True``; 770 px in
  ``configs/dataset/ap-10k.yaml``): the longest side is resized to S and the other to
  ``round(side * S / max(W, H))`` (PIL bilinear); the image is zero-padded at the bottom and right to S x S.
  The ground truth is scaled per axis by resized / original size and clamped to
  ``[1e-4, resized side - 1 - 1e-4]``; the threshold is ``max(w, h) * S / max(W, H)``; ``<=``, per image.
  The long side's factor is exactly ``S / max(W, H)``, the threshold's; the short side's differs from it by at
  most 0.5 / (resized short side) relatively. So the original frame gives MARCO's verdicts (predictions
  mapped between the frames by the same per-axis factors) except for a distance within that relative margin
  of ``alpha * T`` (below 0.1 % for a 770 x 513 image) and for ground truth that MARCO's clamp moves: in the
  last resized pixel at the right or bottom edge, or within 1e-4 px of the left or top. This bound comes from
  reading the code; it was not measured on AP-10K.

Training (``trn``) skips argali sheep, black bear and king cheetah, as both reference trainers do.

Provenance: every result records, under ``benchmark.data``, the crowd rule that built the folder
(``crowd_rule``: ``published-list``, ``other-list``, ``derived``, or ``not recorded`` for a folder without
corrbench's ``manifest.json``) and, from the manifest, the build's seed and pair-list hash. A folder whose
crowd images are not GeoAware-SC's published list logs a warning (its test pairs are not the papers'), which
the result keeps as ``benchmark.data.warning``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...files import UnreadableJSON, read_json
from ...metrics import SKIP_NO_VALID
from ...types import Pair
from ..base import DatasetAdapter, PairSet, SkippedPair
from ..download import DatasetSource
from .layout import (
    BUILT_FOLDER,
    CROWD_LIST_SOURCE,
    CROWD_LIST_URL,
    DRIVE_ID,
    IMAGE_DIR,
    IMAGE_FIELDS,
    JPEG_DIR,
    KEYPOINT_NAMES,
    MANIFEST,
    NUM_KEYPOINTS,
    PAIR_DIR,
    PAIR_PATH_FIELDS,
    RAW_ANNOTATION_FILES,
    RAW_FOLDER,
    SETTINGS,
    SPLITS,
    TRAINING_EXCLUDED_SPECIES,
    crowd_rule_of,
    crowd_warning,
)

log = logging.getLogger(__name__)

VISIBILITY_RULES = ("v>0", "v==2")

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
        f"3) run `corrbench build-ap10k`, which downloads GeoAware-SC's crowd list ({CROWD_LIST_URL}; offline, "
        f"save it by hand as <data root>/{CROWD_LIST_SOURCE.provides}) and writes <data root>/{BUILT_FOLDER}/"
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
        result = PairSet(pairs=[], notes=self.build_notes())
        images: dict[Path, dict[str, Any] | tuple[str, Path, str]] = {}  # each annotation file read once
        for category, _, path in sorted(listed):
            read = self._read_pair(path, category, images, result.skipped)
            if read is not None:
                result.add(*read)
        return result

    def build_notes(self) -> dict[str, Any]:
        """How the folder was built (for ``benchmark.data``), from its manifest; warns when the crowd images
        are not GeoAware-SC's published list."""
        try:
            manifest = read_json(self.root / MANIFEST)
        except UnreadableJSON:
            manifest = None  # a folder written by GeoAware-SC's or MARCO's script has none
        if not isinstance(manifest, dict):
            manifest = None
        notes: dict[str, Any] = {"crowd_rule": crowd_rule_of(manifest)}
        if manifest is not None:
            crowd = manifest.get("crowd") if isinstance(manifest.get("crowd"), dict) else {}
            notes.update({"crowd_list_sha256": crowd.get("list_sha256"), "seed": manifest.get("seed"),
                          "pair_list_sha256": manifest.get("pair_list_sha256")})
        warning = crowd_warning(manifest)
        if warning:
            log.warning("warning: %s (%s)", warning, self.root)
            notes["warning"] = warning  # kept with the result: `corrbench table` repeats it under the column
        return notes

    # -------------------------------------------------------------------------------------------- reading

    def _read_pair(self, path: Path, category: str, images: dict,
                   skipped: list[SkippedPair]) -> tuple[Pair, Path, Path] | None:
        """The pair of one pair file and the image annotations its keypoints come from, or None (skipped)."""
        stem = path.stem
        if ":" not in stem:
            self.skip(skipped, stem, "malformed pair file", path, "the name must be <src>-<trg>:<category>.json")
            return None
        try:
            data = read_json(path)
        except UnreadableJSON as exc:
            self.skip(skipped, stem, "malformed pair file", path, f"not valid JSON ({exc})")
            return None
        ends, files = {}, {}
        for end, field in PAIR_PATH_FIELDS.items():
            value = data.get(field) if isinstance(data, dict) else None
            json_path = self._resolve(value)
            if json_path is None:
                self.skip(skipped, stem, "malformed pair file", path,
                          f"{field} must be a path containing {IMAGE_DIR}/, got {value!r:.120}")
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
            data = read_json(json_path)
        except UnreadableJSON as exc:
            if exc.missing:
                return "missing image annotation", json_path, "the file does not exist"
            return "malformed image annotation", json_path, f"not valid JSON ({exc})"
        if not isinstance(data, dict) or any(key not in data for key in IMAGE_FIELDS):
            missing = [k for k in IMAGE_FIELDS if not isinstance(data, dict) or k not in data]
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
