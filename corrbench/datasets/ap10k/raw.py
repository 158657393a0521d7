"""Reading AP-10K's raw download: the split1 COCO files, merged, checked, one record per image; the crowd list.

Missing images, malformed COCO records and inconsistent ids are errors, never silently dropped: a benchmark
must not depend on which files happened to be present (``build.py`` explains the protocol these feed).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...files import file_sha256
from ..coco import read_coco
from .layout import CROWD_LIST_URL, DRIVE_ID, IMAGE_DIR, JPEG_DIR, NUM_KEYPOINTS, RAW_ANNOTATION_FILES


@dataclass
class ImageRecord:
    """One annotated image: its first annotation merged with its image record and category names."""

    image_id: int
    family: str
    species: str
    file_name: str
    visibility: np.ndarray  # (17,) int, v in {0, 1, 2}
    num_keypoints: int  # the COCO field, which the reference image filter reads
    record: dict[str, Any]
    crowd: bool = False

    @property
    def stem(self) -> str:
        return f"{self.image_id:012d}"

    @property
    def json_path(self) -> str:
        """Path of the image annotation file relative to the dataset folder (POSIX separators)."""
        return f"{IMAGE_DIR}/{self.family}/{self.species}/{self.stem}.json"

    @property
    def jpeg_path(self) -> str:
        return f"{JPEG_DIR}/{self.family}/{self.species}/{self.stem}.jpg"


def locate_raw(raw_root: Path) -> Path:
    """The folder holding ``annotations/`` (``raw_root`` itself, or the zip's ``ap-10k/`` inside it)."""
    raw_root = Path(raw_root)
    for candidate in (raw_root, raw_root / "ap-10k"):
        if (candidate / "annotations" / RAW_ANNOTATION_FILES[0]).is_file():
            return candidate
    raise DataError(
        f"AP-10K annotations not found: {raw_root / 'annotations' / RAW_ANNOTATION_FILES[0]} does not exist",
        hint=raw_download_steps(raw_root),
    )


def raw_download_steps(raw_root: Path | str) -> str:
    return (
        f"download ap-10k.zip from Google Drive (id {DRIVE_ID}: https://drive.google.com/file/d/{DRIVE_ID}, or "
        f"`pip install gdown && gdown {DRIVE_ID}`), unzip it and move the contents of its ap-10k/ folder "
        f"(annotations/, data/) to {raw_root}, so that "
        f"{Path(raw_root) / 'annotations' / RAW_ANNOTATION_FILES[0]} exists"
    )


_NOT_THE_RELEASE = "this is not the AP-10K release's COCO file; download ap-10k.zip again and extract it unchanged"


def _fail(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}", hint=_NOT_THE_RELEASE)


def _load_coco(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"AP-10K annotation file missing: {path}",
                        hint=raw_download_steps(path.parent.parent)) from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc})") from None
    return read_coco(path, raw, hint=_NOT_THE_RELEASE)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _check_image(path: Path, image: Any) -> None:
    if not isinstance(image, dict):
        raise _fail(path, f"an entry of 'images' is not an object: {image!r:.80}")
    if not isinstance(image.get("id"), int) or isinstance(image.get("id"), bool) or image["id"] < 0:
        raise _fail(path, f"image {image.get('id')!r}: field 'id' must be a non-negative integer")
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        raise _fail(path, f"image {image['id']}: field 'file_name' must be a file name")
    for key in ("width", "height"):
        if not isinstance(image.get(key), int) or image[key] <= 0:
            raise _fail(path, f"image {image['id']}: field {key!r} must be a positive integer")


def _check_annotation(path: Path, ann: Any) -> None:
    if not isinstance(ann, dict):
        raise _fail(path, f"an entry of 'annotations' is not an object: {ann!r:.80}")
    name = f"annotation {ann.get('id', '?')} (image {ann.get('image_id', '?')})"
    for key in ("image_id", "category_id", "num_keypoints"):
        if not isinstance(ann.get(key), int) or isinstance(ann.get(key), bool):
            raise _fail(path, f"{name}: field {key!r} must be an integer")
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
        raise _fail(path, f"{name}: field 'bbox' must be [x, y, w, h], got {bbox!r:.80}")
    kps = ann.get("keypoints")
    if not isinstance(kps, list) or len(kps) != 3 * NUM_KEYPOINTS:
        size = len(kps) if isinstance(kps, list) else type(kps).__name__
        raise _fail(path, f"{name}: field 'keypoints' must hold {NUM_KEYPOINTS} x 3 = {3 * NUM_KEYPOINTS} numbers "
                          f"(x, y, v per keypoint), got {size}")
    if not all(_number(v) for v in kps) or any(v not in (0, 1, 2) for v in kps[2::3]):
        raise _fail(path, f"{name}: field 'keypoints' must be numbers with visibility v in {{0, 1, 2}}")


def _categories(path: Path, entries: list[Any], known: dict[int, tuple[str, str]]) -> None:
    for cat in entries:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise _fail(path, f"an entry of 'categories' has no integer 'id': {cat!r:.80}")
        names = (cat.get("supercategory"), cat.get("name"))
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise _fail(path, f"category {cat['id']}: fields 'name' and 'supercategory' must be non-empty strings")
        bad = [n for n in names if any(ch in n for ch in "/\\:") or n in (".", "..")]
        if bad:
            raise _fail(path, f"category {cat['id']}: {bad[0]!r} cannot be a folder name (no '/', '\\' or ':')")
        if cat["id"] in known and known[cat["id"]] != names:
            raise _fail(path, f"category {cat['id']} is {names}, but an earlier file says {known[cat['id']]}")
        known[cat["id"]] = names  # (family, species)


@dataclass
class RawAP10K:
    """The merged split1 annotations."""

    images: dict[int, ImageRecord]  # image id -> first annotation, in merge order
    annotation_counts: Counter  # image id -> number of annotations in the merged files
    iscrowd_ids: set[int]  # images with an annotation whose COCO iscrowd is 1
    checksums: dict[str, str]  # annotation file name -> sha256
    root: Path


def read_raw(raw_root: Path) -> RawAP10K:
    """Merge split1 train, test, val (in that order) and keep each image's first annotation."""
    root = locate_raw(raw_root)
    categories: dict[int, tuple[str, str]] = {}
    image_entries: dict[int, dict[str, Any]] = {}
    annotations: list[tuple[Path, dict[str, Any]]] = []
    checksums: dict[str, str] = {}
    for name in RAW_ANNOTATION_FILES:
        path = root / "annotations" / name
        data = _load_coco(path)
        checksums[name] = file_sha256(path)
        _categories(path, data["categories"], categories)
        for image in data["images"]:
            _check_image(path, image)
            image_entries[image["id"]] = image  # later files win, as in the reference's dict
        for ann in data["annotations"]:
            _check_annotation(path, ann)
            annotations.append((path, ann))
    species_family: dict[str, str] = {}
    for family, species in categories.values():
        if species_family.setdefault(species, family) != family:
            raise DataError(f"species {species!r} appears under two families ({species_family[species]}, {family})",
                            hint="AP-10K's categories name each species once; check the annotation files")
    counts: Counter = Counter()
    iscrowd: set[int] = set()
    images: dict[int, ImageRecord] = {}
    for path, ann in annotations:
        image_id = ann["image_id"]
        counts[image_id] += 1
        if ann.get("iscrowd") == 1:
            iscrowd.add(image_id)
        if image_id in images:
            continue
        if image_id not in image_entries:
            raise _fail(path, f"annotation {ann.get('id', '?')} refers to image {image_id}, which no file lists")
        if ann["category_id"] not in categories:
            raise _fail(path, f"annotation {ann.get('id', '?')} has unknown category_id {ann['category_id']}")
        family, species = categories[ann["category_id"]]
        image = image_entries[image_id]
        record = {**ann, **image, "name": species, "supercategory": family}
        images[image_id] = ImageRecord(
            image_id=image_id, family=family, species=species, file_name=image["file_name"],
            visibility=np.asarray(ann["keypoints"][2::3], dtype=np.int64),
            num_keypoints=ann["num_keypoints"], record=record,
        )
    return RawAP10K(images, counts, iscrowd, checksums, root)


def read_crowd_list(path: Path) -> tuple[set[int], str]:
    """GeoAware-SC's ``ap-10k_is_crowd.txt``: one zero-padded image id a line. Returns the ids and the sha256."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the crowd list {path}: {exc}",
                        hint=f"check the --crowd-list path, or build without --crowd-list to download GeoAware-SC's "
                             f"published list ({CROWD_LIST_URL})") from None
    ids = set()
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.isdigit():
            raise DataError(f"{path}, line {number}: {text!r:.40} is not an image id",
                            hint=f"the list holds one image id a line (e.g. 000000022657); see {CROWD_LIST_URL}")
        ids.add(int(text))
    return ids, hashlib.sha256(raw).hexdigest()
