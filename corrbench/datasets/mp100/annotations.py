"""Reading MP-100's COCO test annotation files into one index: images by ``file_name``, their instances, and
what was malformed (left out and named, never silently dropped).

Which annotations: the union of the five ``mp100_split{1..5}_test.json`` files. MARCO's loader
(``datasets/mp100.py``, ``_build_annotation_index``) indexes exactly the files matching ``*test*.json``, and its
released lists resolve there; MP-100 makes every category a test category of one of its five splits, so the
union holds every category. The train/val files are never read. An image listed by more than one file is taken
from the first (split order). A category record's ``keypoints`` (names) may be empty: the release writes
``"keypoints": []`` for both categories named "face" (ids 40 and 18), and the other names are just ``"0"``,
``"1"``, ...; an empty list means "names unknown", and the count is taken from the category's annotations
(which must agree; a file where they do not is refused).

One instance per image and category (``AnnotationIndex.instance``): the annotation of that category with the
most visible keypoints (ties: the lowest annotation id); visible means COCO ``v > 0`` (MARCO's loader).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...errors import DataError
from ..coco import read_coco
from .layout import ANNOTATIONS_URL, CATEGORIES, annotation_test_files


@dataclass(frozen=True)
class Instance:
    """One annotated object: K keypoints in category order, COCO visibility ``v > 0``."""

    ann_id: int
    category_id: int
    xy: tuple[tuple[float, float], ...]
    visible: tuple[bool, ...]
    bbox: tuple[float, float, float, float]  # COCO [x, y, w, h]

    @property
    def num_visible(self) -> int:
        return sum(self.visible)

    @property
    def visible_mask(self) -> int:
        """Bit k set when keypoint k is visible (so shared keypoints are one ``&`` and a bit count)."""
        return sum(1 << k for k, v in enumerate(self.visible) if v)


@dataclass(frozen=True)
class ImageRecord:
    image_id: int
    file_name: str
    width: int
    height: int
    annotation_file: str


@dataclass
class AnnotationIndex:
    """The test annotations of MP-100: images by ``file_name``, their instances, and what was malformed."""

    root: Path
    files: dict[str, str]  # annotation file name -> sha256
    categories: dict[int, dict[str, Any]]  # id -> {"name": str, "keypoints": [names], or None when not given}
    images: dict[str, ImageRecord]
    instances: dict[str, list[Instance]]  # by file_name, in annotation-id order
    problems: dict[str, list[str]]  # file_name (or annotation file) -> what was malformed there

    def instance(self, file_name: str, category_id: int) -> Instance | None:
        """The image's instance of ``category_id``: most visible keypoints, then lowest annotation id."""
        candidates = [i for i in self.instances.get(file_name, ()) if i.category_id == category_id]
        if not candidates:
            return None
        return min(candidates, key=lambda i: (-i.num_visible, i.ann_id))

    def problem_count(self) -> int:
        return sum(len(v) for v in self.problems.values())


_INDEX_CACHE: dict[tuple, AnnotationIndex] = {}


def load_annotations(annotations_root: Path) -> AnnotationIndex:
    """Read (and cache, keyed by file names, sizes and mtimes) MP-100's test annotation files."""
    files = annotation_test_files(annotations_root)
    if not files:
        raise DataError(
            f"no MP-100 test annotation files (mp100_split1_test.json ... mp100_split5_test.json) in "
            f"{annotations_root}",
            hint=f"download MP-100's annotation files from {ANNOTATIONS_URL} into that folder",
        )
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    if key not in _INDEX_CACHE:
        _INDEX_CACHE.clear()  # one MP-100 at a time: the files are large
        _INDEX_CACHE[key] = _read_index(Path(annotations_root), files)
    return _INDEX_CACHE[key]


def _read_index(root: Path, files: list[Path]) -> AnnotationIndex:
    index = AnnotationIndex(root, {}, {}, {}, {}, {})
    for path in files:
        raw = path.read_bytes()
        index.files[path.name] = hashlib.sha256(raw).hexdigest()
        _add_coco_file(index, path, raw)
    for instances in index.instances.values():
        instances.sort(key=lambda i: i.ann_id)
    return index


def _add_coco_file(index: AnnotationIndex, path: Path, raw: bytes) -> None:
    data = read_coco(path, raw, hint="download the MP-100 annotation file again (this is not an MP-100 COCO file)")
    problems = index.problems.setdefault(path.name, [])
    file_categories: dict[int, dict[str, Any]] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not isinstance(cat.get("name"), str):
            problems.append(f"category entry {cat!r:.80} has no integer 'id' and string 'name'")
            continue
        names = cat.get("keypoints")
        # An empty (or absent) name list means the names are unknown, not that the category has no keypoints:
        # MP-100's release writes "keypoints": [] for 300W's face (id 40, 68 landmarks) and for id 18.
        entry = {"name": cat["name"], "keypoints": list(names) if isinstance(names, list) and names else None}
        file_categories[cat["id"]] = entry
        index.categories.setdefault(cat["id"], entry)
    local_images: dict[int, str] = {}  # image ids are resolved within their own file
    for image in data["images"]:
        record = _image_record(image, path.name)
        if isinstance(record, str):
            problems.append(record)
            continue
        local_images[record.image_id] = record.file_name
        index.images.setdefault(record.file_name, record)
    counts: dict[int, dict[int, int]] = {}  # category id -> keypoint count -> an annotation id with that count
    for ann in data["annotations"]:
        file_name = local_images.get(ann.get("image_id")) if isinstance(ann, dict) else None
        instance = _instance(ann, file_categories, file_name)
        if isinstance(instance, str):
            index.problems.setdefault(file_name or path.name, []).append(f"{path.name}: {instance}")
            continue
        counts.setdefault(instance.category_id, {}).setdefault(len(instance.xy), instance.ann_id)
        if index.images[file_name].annotation_file == path.name:  # an image repeated in a later file is skipped
            index.instances.setdefault(file_name, []).append(instance)
    _check_unnamed_counts(path, file_categories, counts)


def _check_unnamed_counts(path: Path, categories: Mapping[int, dict[str, Any]],
                          counts: Mapping[int, Mapping[int, int]]) -> None:
    """A category without keypoint names takes its keypoint count from its annotations, which must agree:
    with no name list to say which count is right, a disagreement is an error, not a skipped annotation."""
    for category_id, found in counts.items():
        if categories[category_id]["keypoints"] is None and len(found) > 1:
            listed = ", ".join(f"{n} (e.g. annotation {ann_id})" for n, ann_id in sorted(found.items()))
            raise DataError(
                f"{path}: category {categories[category_id]['name']!r} (id {category_id}) lists no keypoint names "
                f"and its annotations disagree on the keypoint count: {listed}",
                hint="the file is damaged or not MP-100's release; download the annotation files again from "
                + ANNOTATIONS_URL,
            )


def _image_record(image: Any, file_label: str) -> ImageRecord | str:
    if not isinstance(image, dict):
        return f"image entry {image!r:.80} is not an object"
    image_id, file_name, width, height = (image.get(k) for k in ("id", "file_name", "width", "height"))
    if not isinstance(image_id, int) or not isinstance(file_name, str) or not file_name:
        return f"image entry {image_id!r} has no integer 'id' and 'file_name'"
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        return f"image {file_name}: 'width'/'height' must be positive integers, got {width!r}/{height!r}"
    return ImageRecord(image_id, file_name, width, height, file_label)


def _finite_numbers(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def _instance(ann: Any, categories: Mapping[int, dict[str, Any]], file_name: str | None) -> Instance | str:
    """An Instance, or a sentence saying what is malformed (field and value)."""
    if not isinstance(ann, dict) or not isinstance(ann.get("id"), int):
        return f"annotation {ann!r:.80} has no integer 'id'"
    where = f"annotation {ann['id']}"
    if file_name is None:
        return f"{where}: image_id {ann.get('image_id')!r} is not an image of this file"
    category_id = ann.get("category_id")
    if category_id not in categories:
        return f"{where}: unknown category id {category_id!r} (not in the file's 'categories')"
    keypoints = ann.get("keypoints")
    if not _finite_numbers(keypoints) or len(keypoints) % 3:
        return f"{where}: 'keypoints' must be a flat list [x, y, v, ...] of numbers (length a multiple of 3)"
    names = categories[category_id]["keypoints"]
    if names is not None and len(keypoints) != 3 * len(names):
        return (
            f"{where}: keypoint length mismatch: {len(keypoints) // 3} keypoints, but category "
            f"{categories[category_id]['name']!r} defines {len(names)}"
        )
    bbox = ann.get("bbox")
    if not _finite_numbers(bbox) or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
        return f"{where}: 'bbox' must be [x, y, w, h] with w, h > 0, got {bbox!r}"
    triples = [keypoints[i : i + 3] for i in range(0, len(keypoints), 3)]
    return Instance(
        ann_id=ann["id"],
        category_id=category_id,
        xy=tuple((float(x), float(y)) for x, y, _ in triples),
        visible=tuple(v > 0 for _, _, v in triples),
        bbox=tuple(float(v) for v in bbox),
    )


def check_category_names(index: AnnotationIndex) -> None:
    """Refuse annotation files whose ids name other categories than the benchmark's (another MP-100 release)."""
    for category in CATEGORIES:
        found = index.categories.get(category.id)
        if found is not None and found["name"] != category.name:
            raise DataError(
                f"MP-100 category id {category.id} is named {found['name']!r} in {index.root}, but the MARCO "
                f"benchmark's category {category.id} is {category.name!r}",
                hint="these annotation files are not MP-100's release; download them again from " + ANNOTATIONS_URL,
            )
