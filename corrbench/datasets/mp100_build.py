"""MARCO's MP-100 generalisation benchmark: the curation, rebuilt deterministically, and MARCO's released lists.

MARCO (Supp. G) turns MP-100 (Xu et al., "Pose for Everything", ECCV 2022; 100 categories, COCO-format
keypoints) into five correspondence benchmarks of 2,000 same-category image pairs each. This module is the
torch-free half of corrbench's support (the reader is ``corrbench.datasets.mp100``):

* ``build_mp100`` rebuilds the pair lists from MP-100's annotation files, seeded and byte-identical on every
  run (``corrbench build-mp100``);
* ``install_official_lists`` installs the lists MARCO released, so the paper's pairs are evaluated exactly
  (``corrbench build-mp100 --official`` / ``--official-zip PATH``).

Both write into ``<data root>/MP-100/pairs/`` the five lists in MARCO's exact format (a JSON list of
``{"episode_idx", "category_id", "src_file", "trg_file"}``, ``json.dumps(..., indent=2)``, no trailing
newline) and a ``manifest.json`` naming the kind of lists installed (``"official"`` or ``"rebuilt"``), the
sha256 of every list and per-domain statistics. The folder is replaced as a whole, so a reader never sees
lists of one kind with the manifest of the other.

Layout under the data root (``MP-100`` is the benchmarks' ``data_dir``)::

    MP-100/annotations/mp100_split{1..5}_{train,val,test}.json   MP-100's COCO files (only *_test are read)
    MP-100/images/<category folder>/...                           COCO ``file_name`` is relative to this
    MP-100/pairs/pairs_{human_face,clothing,animal_face,animal_body_unseen,furniture}.json, manifest.json
    MP-100/official/                                               MARCO's zip as downloaded and extracted

MARCO's own arrangement (its docs/data.md and configs/dataset/mp-100.yaml) is read as well:
``mp100_all/annotations/``, ``mp100_all/mp100/<category folder>/`` (the images) and ``mp100_all/pairs/`` (its
lists, without a manifest: recognised by their sha256). ``locate_mp100`` picks the arrangement: ``MP-100/``
when it holds the test annotation files, else ``mp100_all/`` when that does, else ``MP-100/`` (where downloads
and builds go). The builder and the reader use the same answer, and results record it.

The curation, and where each choice comes from:

1. Which annotations: the union of the five ``mp100_split{1..5}_test.json`` files. MARCO's loader
   (``datasets/mp100.py``, ``_build_annotation_index``) indexes exactly the files matching ``*test*.json``,
   and its released lists resolve there; MP-100 makes every category a test category of one of its five
   splits, so the union holds every category. The train/val files are never read. An image listed by more
   than one file is taken from the first (split order). A category record's ``keypoints`` (names) may be
   empty: the release writes ``"keypoints": []`` for both categories named "face" (ids 40 and 18), and the
   other names are just ``"0"``, ``"1"``, ...; an empty list means "names unknown", and the count is taken
   from the category's annotations (which must agree; a file where they do not is refused).
2. One instance per image and category: the annotation of that category with the most visible keypoints
   (ties: the lowest annotation id). MARCO's loader instead concatenates the keypoints of every instance in
   the image; corrbench pairs one object with one object. Visible means COCO ``v > 0`` (MARCO's loader).
3. Drop instances with fewer than ``MIN_VISIBLE`` = 3 visible keypoints (paper, Supp. G).
4. Remove the categories overlapping SPair-71k's training classes (``SPAIR_OVERLAP``, the paper's list).
5. The five domains (``DOMAINS``) and their categories (``CATEGORIES``): derived from the category ids in
   MARCO's released lists and MP-100's category names. Human face is MP-100 category 40 (300W, 68 landmarks;
   MP-100 has a second category named "face", id 18, supercategory "person", whose 100 annotations in
   ``mp100_split5_test.json`` hold 19 keypoints each on images under ``amur_tiger_body/``: not used);
   apparel is the 12 DeepFashion2 categories without ``shorts``; animal body is the 29 AP-10K bodies left
   after the overlaps plus fly, locust (DeepPoseKit) and macaque (MacaquePose); animal face the 26 AnimalWeb
   faces left; home furniture is sofa (the paper's "couch"), table, bed and swivelchair, not chair. Categories
   of no domain (birds, person, hand, the id-18 face, chair, shorts, suv) are simply not used.
6. Pairs: ordered (source, target) pairs of two different images of one category that share at least
   ``MIN_SHARED`` = 3 keypoints visible in both (corrbench's choice, the per-image bar of step 3 applied to
   the pair, as AP-10K's test pairs do, so that no pair is unscorable).
7. Stratified sampling, ``pairs_per_domain`` (2,000) per domain, so that no class dominates: each category
   gets an equal share; the remainder goes one pair each to the first categories in sorted name order; a
   category with fewer eligible pairs than its share gives all it has, and what it could not give is shared
   again, by the same rule, among the categories that still have pairs. Within a category the pairs taken
   are the ones with the smallest ``sha256(seed, category id, source, target)``, and the domain's list is
   ordered by ``sha256(seed, domain, source, target)`` (its position is ``episode_idx``). Hash ranks instead
   of a random generator make the lists independent of Python and numpy versions and of reading order.

What differs from MARCO's released lists (why ``--official`` exists): MARCO draws each episode's category at
random (its category counts vary, e.g. 485 to 532 pairs per furniture category) and its lists use at most
100 distinct images per category (a pool it does not describe); the rebuilt lists have equal counts and use
every eligible image. The two kinds of lists are different pair sets: results name the kind in every pair id.

Images: MP-100 ships annotations only; the images come from the source datasets and must be assembled under
the images folder (``IMAGE_SOURCES`` says where each comes from). The lists do not need the images: the
builder reports which folders and files are missing, and evaluation reports pairs with a missing image as
skipped ("missing image").
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import click

from ..errors import ConfigError, DataError
from ..files import file_sha256, replacing_directory
from .coco import read_coco
from .download import DatasetSource, fetch_source

DATA_DIR = "MP-100"  # the benchmarks' data_dir under the data root
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
PAIRS_DIR = "pairs"
MARCO_DATA_DIR = "mp100_all"  # MARCO: data/mp100_all/{annotations,mp100,pairs}
MARCO_IMAGES_DIR = "mp100"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1

MIN_VISIBLE = 3  # an instance needs this many visible keypoints (MARCO, Supp. G)
MIN_SHARED = 3  # a rebuilt pair needs this many keypoints visible in both images (corrbench)
PAIRS_PER_DOMAIN = 2000

KINDS = ("official", "rebuilt")
ENTRY_FIELDS = ("episode_idx", "category_id", "src_file", "trg_file")  # MARCO's pair-list entries, in order
_TEST_FILE = re.compile(r"^mp100_split(\d+)_test\.json$")

ANNOTATIONS_URL = "https://drive.google.com/drive/folders/1pzC5uEgi4AW9RO9_T1J-0xSKF12mdj1_"
OFFICIAL_URL = "https://github.com/visinf/visinf.github.io/raw/main/MARCO/annotations/mp100_pairs.zip"
# sha256 of the five lists in MARCO's release: an installed "official" list that differs is reported.
OFFICIAL_RELEASE_SHA256 = {
    "human_face": "a0747fd1c335b7fefef8ed8d6c77495c7ce9378906e8d3db7cb8852385fafd86",
    "clothing": "09d7e5d03bf0ee66351ab904db62c99175fe52a7c48a48afc82e0c6cb146b511",
    "animal_body_unseen": "3f5582ed9e3878c64c4bf6d7e4cfd23852c79c76ed9e4042d831092b0a5ff4fa",
    "animal_face": "60f144ad4787bc6cadd186fe47bea14cb048213f08540fe423fb8b3a9b785d38",
    "furniture": "562baf75cad716bc97f6f36756cae1107d19714742799ee941c03e1b8a9f1ffa",
}

# The released zip holds one folder, mp100_pairs/, with the five lists (MARCO's docs/data.md moves
# mp100_pairs/* after unzipping). The download seam extracts it under MP-100/official/.
OFFICIAL_PAIR_LISTS = DatasetSource(
    name="MARCO's MP-100 pair lists (5 x 2,000 pairs)",
    url=OFFICIAL_URL,
    filename="mp100_pairs.zip",
    kind="archive",
    destination=f"{DATA_DIR}/official",
    provides=f"{DATA_DIR}/official/mp100_pairs/pairs_human_face.json",
)


# -- the benchmark's definition, as data ------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """One of MARCO's five macro-domains: one pair list, one benchmark."""

    key: str  # the list is pairs_<key>.json (MARCO's file names)
    title: str
    benchmark: str
    setting: str  # "unseen keypoints" or "unseen categories"

    @property
    def list_file(self) -> str:
        return f"pairs_{self.key}.json"


DOMAINS: dict[str, Domain] = {
    d.key: d
    for d in (
        Domain("human_face", "human face", "mp100-human-face", "unseen keypoints"),
        Domain("clothing", "apparel items", "mp100-apparel", "unseen keypoints"),
        Domain("animal_body_unseen", "animal body", "mp100-animal-body", "unseen categories"),
        Domain("animal_face", "animal face", "mp100-animal-face", "unseen categories"),
        Domain("furniture", "home furniture", "mp100-home-furniture", "unseen categories"),
    )
}


@dataclass(frozen=True)
class Category:
    """An MP-100 category used by the benchmark."""

    id: int  # MP-100's COCO category id (= the released lists' category_id)
    name: str  # MP-100's COCO category name
    domain: str
    folder: str  # its image folder: the first component of the COCO file_name
    source: str  # a key of IMAGE_SOURCES


def _same_folder(domain: str, source: str, names: Mapping[int, str]) -> tuple[Category, ...]:
    return tuple(Category(cid, name, domain, name, source) for cid, name in names.items())


CATEGORIES: tuple[Category, ...] = (
    Category(40, "face", "human_face", "human_face", "300W"),
    *_same_folder("clothing", "DeepFashion2", {
        1: "skirt", 8: "sling_dress", 11: "vest_dress", 17: "sling", 25: "short_sleeved_shirt",
        60: "short_sleeved_dress", 62: "vest", 64: "long_sleeved_dress", 67: "trousers",
        78: "long_sleeved_outwear", 83: "short_sleeved_outwear", 97: "long_sleeved_shirt",
    }),
    *_same_folder("animal_body_unseen", "AP-10K", {
        5: "panda_body", 6: "hamster_body", 9: "panther_body", 15: "pig_body", 21: "bobcat_body",
        26: "elephant_body", 27: "deer_body", 29: "rabbit_body", 30: "bison_body", 31: "rhino_body",
        33: "squirrel_body", 35: "gorilla_body", 43: "spider_monkey_body", 50: "otter_body",
        52: "leopard_body", 54: "hippo_body", 55: "zebra_body", 58: "antelope_body", 68: "fox_body",
        70: "skunk_body", 71: "giraffe_body", 73: "lion_body", 76: "polar_bear_body", 85: "cheetah_body",
        88: "rat_body", 90: "raccoon_body", 91: "beaver_body", 95: "weasel_body", 100: "wolf_body",
    }),
    Category(44, "locust", "animal_body_unseen", "locust_body", "DeepPoseKit"),
    Category(66, "fly", "animal_body_unseen", "fly_body", "DeepPoseKit"),
    Category(92, "macaque", "animal_body_unseen", "macaque_body", "MacaquePose"),
    *_same_folder("animal_face", "AnimalWeb", {
        4: "fennecfox_face", 7: "chipmunk_face", 10: "klipspringer_face", 13: "californiansealion_face",
        19: "arcticwolf_face", 22: "guanaco_face", 23: "fallowdeer_face", 24: "dassie_face",
        34: "greyseal_face", 36: "quokka_face", 37: "camel_face", 47: "alpaca_face", 56: "onager_face",
        57: "bonobo_face", 61: "gibbons_face", 63: "ferret_face", 65: "pademelon_face",
        69: "olivebaboon_face", 77: "commonwarthog_face", 79: "grizzlybear_face", 82: "capebuffalo_face",
        89: "proboscismonkey_face", 93: "gerbil_face", 94: "blackbuck_face", 96: "gentoopenguin_face",
        99: "capybara_face",
    }),
    *_same_folder("furniture", "Keypoint-5", {39: "swivelchair", 49: "sofa", 84: "bed", 98: "table"}),
)  # fmt: skip
CATEGORY_BY_ID: dict[int, Category] = {c.id: c for c in CATEGORIES}

# MP-100 categories removed because SPair-71k trains on them (MARCO, Supp. G).
SPAIR_OVERLAP: dict[int, str] = {
    2: "horse_body", 3: "dog_body", 12: "przewalskihorse_face", 20: "cat_body", 32: "car", 38: "bus",
    42: "sheep_body", 48: "goldenretriever_face", 74: "germanshepherddog_face", 81: "bighornsheep_face",
    87: "cow_body",
}  # fmt: skip

# Where each category's images come from (MP-100 ships annotations only).
IMAGE_SOURCES: dict[str, str] = {
    "300W": (
        "300W via OpenXLab (dataset OpenDataLab/300w; needs an OpenXLab account: `pip install openxlab`, "
        "`openxlab login`, `openxlab dataset get --dataset-repo OpenDataLab/300w`); unpack the nested "
        "300w.tar.gz.00 / 300w.tar.00 archives and put 300w/images/helen at <images>/human_face/helen "
        "(2,000 images in helen/trainset)"
    ),
    "DeepFashion2": (
        "DeepFashion2 training set (https://github.com/switchablenorms/DeepFashion2; Google Drive, the zip "
        "password comes from the dataset's request form); MP-100 keeps DeepFashion2's file names, so each "
        "apparel folder can be a link (or hard-link copy) of the whole train/image folder"
    ),
    "AnimalWeb": (
        "AnimalWeb via OpenXLab (dataset OpenDataLab/AnimalWeb, OpenXLab account needed); unrar "
        "animal_dataset_v1_c.rar and move the images <species>_<n>.jpg into <images>/<species>_face/"
    ),
    "AP-10K": (
        "AP-10K (https://github.com/AlexTheBad/AP-10K, Google Drive id 1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad); "
        "MP-100 keeps AP-10K's file names, so <images>/<species>_body can be a link to AP-10K's data/ folder"
    ),
    "DeepPoseKit": (
        "DeepPoseKit-Data (https://github.com/jgraving/DeepPoseKit-Data); save frame i of "
        "datasets/<fly|locust>/annotation_data_release.h5 as <images>/<fly|locust>_body/<i>.jpg (h5py)"
    ),
    "MacaquePose": (
        "MacaquePose (https://www.pri.kyoto-u.ac.jp/datasets/macaquepose/index.html); the files of "
        "v1/images/ go to <images>/macaque_body/"
    ),
    "Keypoint-5": (
        "Keypoint-5 (http://3dinterpreter.csail.mit.edu/data/keypoint-5.zip); the files of "
        "<category>/images/ go to <images>/<category>/ (bed, sofa, swivelchair, table)"
    ),
}


def domain_categories(domain: str) -> tuple[Category, ...]:
    return tuple(c for c in CATEGORIES if c.domain == domain)


def check_domain(domain: str) -> Domain:
    if domain not in DOMAINS:
        raise ConfigError(f"unknown MP-100 domain {domain!r}", hint=f"use one of {', '.join(DOMAINS)}")
    return DOMAINS[domain]


# -- MP-100's COCO annotation files ---------------------------------------------------------------------


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


def annotation_test_files(annotations_root: Path) -> list[Path]:
    """``mp100_split<k>_test.json`` files in split order."""
    root = Path(annotations_root)
    found = [p for p in root.glob("mp100_split*_test.json") if _TEST_FILE.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda p: int(_TEST_FILE.match(p.name).group(1)))


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


# -- pair lists in MARCO's format -----------------------------------------------------------------------


@dataclass(frozen=True)
class PairEntry:
    episode_idx: int
    category_id: int
    src_file: str
    trg_file: str

    def to_json(self) -> dict[str, Any]:
        return {"episode_idx": self.episode_idx, "category_id": self.category_id,
                "src_file": self.src_file, "trg_file": self.trg_file}  # fmt: skip


def encode_pair_list(entries: Iterable[PairEntry]) -> bytes:
    """MARCO's exact bytes: ``json.dumps(list, indent=2)``, keys in release order, no trailing newline."""
    return json.dumps([e.to_json() for e in entries], indent=2).encode()


def decode_pair_list(raw: bytes, label: str) -> list[Any]:
    """The entries of a pair list (not yet validated one by one); DataError for a file that is not one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{label}: malformed pair list: not valid JSON ({exc})",
            hint="install the lists again: `corrbench build-mp100 --official` (or rebuild them without --official)",
        ) from None
    if not isinstance(data, list):
        raise DataError(f"{label}: malformed pair list: expected a JSON list of pairs, got {type(data).__name__}")
    return data


def parse_entry(item: Any, domain: str) -> PairEntry | tuple[str, str]:
    """A PairEntry, or ``(reason, detail)`` with reason "malformed pair list entry" or "unknown category"."""
    if not isinstance(item, dict):
        return "malformed pair list entry", f"expected an object with {', '.join(ENTRY_FIELDS)}, got {item!r:.80}"
    missing = [k for k in ENTRY_FIELDS if k not in item]
    if missing:
        return "malformed pair list entry", f"missing field(s) {', '.join(missing)}"
    ints_ok = all(isinstance(item[k], int) and not isinstance(item[k], bool) for k in ("episode_idx", "category_id"))
    files_ok = all(isinstance(item[k], str) and item[k] for k in ("src_file", "trg_file"))
    if not (ints_ok and files_ok):
        return "malformed pair list entry", "episode_idx/category_id must be integers and src_file/trg_file paths"
    category = CATEGORY_BY_ID.get(item["category_id"])
    if category is None or category.domain != domain:
        known = ", ".join(str(c.id) for c in domain_categories(domain))
        return "unknown category", f"category_id {item['category_id']} is not a category of domain {domain} ({known})"
    return PairEntry(item["episode_idx"], item["category_id"], item["src_file"], item["trg_file"])


# -- the manifest ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Folders:
    """Where one arrangement of MP-100 keeps its parts."""

    layout: str  # "corrbench" or "marco"
    base: Path
    images_name: str

    @property
    def annotations(self) -> Path:
        return self.base / ANNOTATIONS_DIR

    @property
    def images(self) -> Path:
        return self.base / self.images_name

    @property
    def pairs(self) -> Path:
        return self.base / PAIRS_DIR

    def notes(self) -> dict[str, str]:
        return {"layout": self.layout, "folder": str(self.base)}


def locate_mp100(data_root: Path) -> Folders:
    """corrbench's ``MP-100/`` when it holds the test annotations, else MARCO's ``mp100_all/`` when that does,
    else ``MP-100/`` (the place to fill)."""
    ours = Folders("corrbench", Path(data_root) / DATA_DIR, IMAGES_DIR)
    marco = Folders("marco", Path(data_root) / MARCO_DATA_DIR, MARCO_IMAGES_DIR)
    if not annotation_test_files(ours.annotations) and annotation_test_files(marco.annotations):
        return marco
    return ours


def pairs_dir(data_root: Path) -> Path:
    return locate_mp100(data_root).pairs


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of an installed pair folder, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(directory) / MANIFEST_FILE).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("kind") in KINDS else None


def list_kind(directory: Path, domain: str) -> str | None:
    """Which kind of list is installed for ``domain``: the manifest's word when its hash still matches;
    "official" for a list byte-identical to MARCO's release placed by hand; None when there is no list."""
    path = Path(directory) / DOMAINS[domain].list_file
    if not path.is_file():
        return None
    digest = file_sha256(path)
    manifest = read_manifest(directory)
    recorded = (manifest or {}).get("domains", {}).get(domain, {}).get("sha256")
    if manifest is not None and recorded == digest:
        return manifest["kind"]
    if digest == OFFICIAL_RELEASE_SHA256[domain]:
        return "official"
    return "unrecorded"


# -- statistics and the images check --------------------------------------------------------------------


def list_statistics(domain: str, entries: list[PairEntry], index: AnnotationIndex | None) -> dict[str, Any]:
    """Categories, images, pairs and keypoints per pair (visible in both, matched by index) of one list."""
    names = {c.id: c.name for c in CATEGORIES}
    per_category: dict[str, int] = {}
    for entry in entries:
        name = names[entry.category_id]
        per_category[name] = per_category.get(name, 0) + 1
    shared: list[int] = []
    unresolved = 0
    for entry in entries if index is not None else ():
        src = index.instance(entry.src_file, entry.category_id)
        trg = index.instance(entry.trg_file, entry.category_id)
        if src is None or trg is None or len(src.visible) != len(trg.visible):
            unresolved += 1
            continue
        shared.append((src.visible_mask & trg.visible_mask).bit_count())
    keypoints = None
    if shared:
        keypoints = {"mean": round(sum(shared) / len(shared), 2), "min": min(shared), "max": max(shared)}
    return {
        "benchmark": DOMAINS[domain].benchmark,
        "categories": len(per_category),
        "images": len({e.src_file for e in entries} | {e.trg_file for e in entries}),
        "pairs": len(entries),
        "pairs_per_category": dict(sorted(per_category.items())),
        "keypoints_per_pair": keypoints,
        "pairs_without_annotation": unresolved if index is not None else None,
    }


def missing_images(entries: Iterable[PairEntry], images_root: Path | None) -> dict[str, Any]:
    """Which listed images are absent under ``images_root``, by folder, with where each folder comes from."""
    folders: dict[str, dict[str, Any]] = {}
    pairs_missing = 0
    checked: dict[str, bool] = {}
    for entry in entries:
        absent = False
        for rel in (entry.src_file, entry.trg_file):
            if rel not in checked:
                checked[rel] = images_root is not None and (Path(images_root) / rel).is_file()
                folder = rel.split("/", 1)[0]
                info = folders.setdefault(folder, {"listed": 0, "missing": 0, "example": None,
                                                   "category_id": entry.category_id})  # fmt: skip
                info["listed"] += 1
                if not checked[rel]:
                    info["missing"] += 1
                    info["example"] = info["example"] or rel
            absent = absent or not checked[rel]
        pairs_missing += absent
    missing = {}
    for folder, info in sorted(folders.items()):
        if info["missing"]:
            category = CATEGORY_BY_ID.get(info["category_id"])
            present = images_root is not None and (Path(images_root) / folder).is_dir()
            missing[folder] = {
                "listed_images": info["listed"],
                "missing_images": info["missing"],
                "folder_present": present,
                "example": info["example"],
                "source": category.source if category else None,
            }
    return {"pairs_with_missing_images": pairs_missing, "folders": missing}


def describe_missing(report: Mapping[str, Any], images_root: Path | None) -> list[str]:
    """One line per incomplete folder: what is missing, where, and where it comes from."""
    lines = []
    for folder, info in report["folders"].items():
        where = Path(images_root) / folder if images_root is not None else Path("<images>") / folder
        if info["folder_present"]:
            what = (f"{info['missing_images']} of {info['listed_images']} listed images missing in {where} "
                    f"(e.g. {info['example']})")  # fmt: skip
        else:
            what = f"missing folder {where} ({info['listed_images']} listed images)"
        lines.append(f"{what}; from {IMAGE_SOURCES.get(info['source'], 'an unknown source')}")
    return lines


# -- rebuilding the lists -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    file_name: str
    mask: int
    num_keypoints: int


def _rank(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def allocate(total: int, capacity: Mapping[str, int]) -> dict[str, int]:
    """Stratified quotas: equal shares, the remainder to the first names in sorted order; a name that cannot
    fill its share gives the rest back to be shared again among the others by the same rule."""
    quota = {name: 0 for name in capacity}
    left = total
    open_names = sorted(n for n in capacity if capacity[n] > 0)
    while left > 0 and open_names:
        share, extra = divmod(left, len(open_names))
        for i, name in enumerate(open_names):
            take = min(share + (i < extra), capacity[name] - quota[name])
            quota[name] += take
            left -= take
        open_names = [n for n in open_names if quota[n] < capacity[n]]
    return quota


def _curate(index: AnnotationIndex) -> tuple[dict[int, list[_Candidate]], dict[int, int]]:
    """Per benchmark category, its images that keep an instance with >= MIN_VISIBLE visible keypoints."""
    candidates: dict[int, list[_Candidate]] = {c.id: [] for c in CATEGORIES}
    dropped: dict[int, int] = {c.id: 0 for c in CATEGORIES}
    for file_name in sorted(index.instances):
        for category_id in sorted({i.category_id for i in index.instances[file_name]} & candidates.keys()):
            instance = index.instance(file_name, category_id)
            if instance.num_visible < MIN_VISIBLE:
                dropped[category_id] += 1
            else:
                candidates[category_id].append(_Candidate(file_name, instance.visible_mask, len(instance.visible)))
    return candidates, dropped


def _eligible_pairs(images: list[_Candidate]) -> list[tuple[str, str]]:
    return [
        (a.file_name, b.file_name)
        for a in images
        for b in images
        if a is not b and a.num_keypoints == b.num_keypoints and (a.mask & b.mask).bit_count() >= MIN_SHARED
    ]


def sample_domain(domain: str, candidates: Mapping[int, list[_Candidate]], total: int, seed: int) -> list[PairEntry]:
    """``total`` pairs of ``domain`` by stratified, hash-ranked sampling (see the module docstring)."""
    categories = sorted(domain_categories(domain), key=lambda c: c.name)
    eligible = {c.name: _eligible_pairs(candidates.get(c.id, [])) for c in categories}
    quota = allocate(total, {name: len(pairs) for name, pairs in eligible.items()})
    chosen: list[tuple[str, int, str, str]] = []
    for category in categories:
        pairs = sorted(eligible[category.name], key=lambda p: _rank("pair", seed, category.id, *p))
        chosen += [(_rank("order", seed, domain, src, trg), category.id, src, trg)
                   for src, trg in pairs[: quota[category.name]]]  # fmt: skip
    chosen.sort()
    return [PairEntry(i, cid, src, trg) for i, (_, cid, src, trg) in enumerate(chosen)]


def build_mp100(
    annotations_root: Path,
    images_root: Path,
    out_root: Path,
    *,
    seed: int = 0,
    pairs_per_domain: int = PAIRS_PER_DOMAIN,
    progress: bool = True,
) -> dict[str, Any]:
    """Rebuild the five pair lists from MP-100's test annotations into ``<out_root>/MP-100/pairs/``.

    ``out_root`` is the data root. Deterministic: the same annotation files, seed and count give the same
    bytes. Images are not needed to build the lists; the ones missing under ``images_root`` are reported
    (printed, and in the manifest) because evaluation will skip their pairs. Returns the manifest.
    """
    if pairs_per_domain < 1:
        raise ConfigError(f"pairs_per_domain must be >= 1, got {pairs_per_domain}")
    index = load_annotations(annotations_root)
    check_category_names(index)
    candidates, dropped = _curate(index)
    lists: dict[str, list[PairEntry]] = {}
    for domain in DOMAINS:
        lists[domain] = sample_domain(domain, candidates, pairs_per_domain, seed)
    present_ids = {i.category_id for instances in index.instances.values() for i in instances}
    curation = {
        "annotation_files": dict(sorted(index.files.items())),
        "min_visible_keypoints": MIN_VISIBLE,
        "min_shared_keypoints": MIN_SHARED,
        "removed_spair_overlap": sorted(SPAIR_OVERLAP[c] for c in present_ids & SPAIR_OVERLAP.keys()),
        "instances_below_min_visible": {c.name: dropped[c.id] for c in sorted(CATEGORIES, key=lambda c: c.name)
                                        if dropped[c.id]},  # fmt: skip
        "categories_without_images": sorted(c.name for c in CATEGORIES if not candidates[c.id]),
        "malformed_annotations": index.problem_count(),
    }
    manifest = _write_lists(out_root, "rebuilt", lists, index, images_root,
                            {"seed": seed, "pairs_per_domain": pairs_per_domain, "curation": curation})  # fmt: skip
    if progress:
        _print_problems(index)
        print("\n".join(report_lines(manifest, images_root)))
    return manifest


def _print_problems(index: AnnotationIndex, limit: int = 10) -> None:
    problems = [f"{where}: {what}" for where, items in sorted(index.problems.items()) for what in items]
    if problems:
        print(f"{len(problems)} malformed annotation entries were left out, e.g.:")
        for line in problems[:limit]:
            print(f"  {line}")


def _write_lists(
    data_root: Path,
    kind: str,
    lists: Mapping[str, list[PairEntry] | bytes],
    index: AnnotationIndex | None,
    images_root: Path | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Encode (or keep, for released bytes) the lists, describe them in a manifest, install both at once."""
    files: dict[str, bytes] = {}
    domains: dict[str, Any] = {}
    images_checked = images_root is not None and Path(images_root).is_dir()
    for domain, value in lists.items():
        raw = value if isinstance(value, bytes) else encode_pair_list(value)
        entries = value if not isinstance(value, bytes) else _entries(raw, DOMAINS[domain].list_file, domain)
        files[DOMAINS[domain].list_file] = raw
        digest = hashlib.sha256(raw).hexdigest()
        domains[domain] = {
            "file": DOMAINS[domain].list_file,
            "sha256": digest,
            "matches_marco_release": digest == OFFICIAL_RELEASE_SHA256[domain],
            **list_statistics(domain, entries, index),
            "missing_images": missing_images(entries, images_root) if images_checked else None,
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "created_by": "corrbench build-mp100",
        **extra,
        "images_checked": images_checked,
        "domains": domains,
    }
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with replacing_directory(pairs_dir(data_root)) as staging:  # a reader never sees old and new lists mixed
        for name, raw in files.items():
            (staging / name).write_bytes(raw)
    return manifest


def _entries(raw: bytes, label: str, domain: str) -> list[PairEntry]:
    entries = []
    for position, item in enumerate(decode_pair_list(raw, label)):
        parsed = parse_entry(item, domain)
        if not isinstance(parsed, PairEntry):
            raise DataError(f"{label}: entry {position}: {parsed[0]}: {parsed[1]}",
                            hint="this is not one of MARCO's MP-100 pair lists")  # fmt: skip
        entries.append(parsed)
    return entries


# -- MARCO's released lists -----------------------------------------------------------------------------


def _lists_from_members(members: Mapping[str, bytes], where: str) -> dict[str, bytes]:
    """Pick the five lists out of archive members / files, by base name (layout inside is not relied on)."""
    found: dict[str, list[str]] = {}
    for name in members:
        base = name.rsplit("/", 1)[-1]
        if "__MACOSX" in name or base.startswith("._"):
            continue
        for domain, spec in DOMAINS.items():
            if base == spec.list_file:
                found.setdefault(domain, []).append(name)
    missing = [DOMAINS[d].list_file for d in DOMAINS if d not in found]
    if missing:
        raise DataError(
            f"{where} lacks {', '.join(missing)}",
            hint=f"it should hold MARCO's five lists (pairs_<domain>.json); download it again from {OFFICIAL_URL}",
        )
    doubles = {d: names for d, names in found.items() if len(names) > 1}
    if doubles:
        raise DataError(f"{where} holds more than one copy of {', '.join(DOMAINS[d].list_file for d in doubles)}")
    return {domain: members[found[domain][0]] for domain in DOMAINS}


def read_official_zip(zip_path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()
                       if not info.is_dir() and info.filename.endswith(".json")}  # fmt: skip
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{zip_path}: not a readable zip archive ({exc})",
                        hint=f"download it again from {OFFICIAL_URL}") from None  # fmt: skip
    return _lists_from_members(members, str(zip_path))


def read_official_folder(folder: Path) -> dict[str, bytes]:
    members = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("pairs_*.json"))}
    return _lists_from_members(members, str(folder))


def install_official_lists(
    data_root: Path,
    *,
    zip_path: Path | None = None,
    annotations_root: Path | None = None,
    images_root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Install MARCO's released lists into ``<data_root>/MP-100/pairs/`` with a manifest (kind "official").

    From ``zip_path`` (a local copy of mp100_pairs.zip) or else from the download seam (``fetch_source``),
    which extracts the zip under ``MP-100/official/``. The lists are installed byte for byte. Statistics need
    the annotations (``annotations_root``, when present); the images check needs ``images_root``.
    """
    data_root = Path(data_root)
    if zip_path is not None:
        lists = read_official_zip(Path(zip_path))
        origin = {"url": OFFICIAL_URL, "archive": Path(zip_path).name,
                  "archive_sha256": file_sha256(zip_path)}  # fmt: skip
    else:
        extracted = data_root / OFFICIAL_PAIR_LISTS.destination
        if not OFFICIAL_PAIR_LISTS.is_present(data_root):
            fetch_source(OFFICIAL_PAIR_LISTS, data_root, progress=progress)
        lists = read_official_folder(extracted)
        downloaded = data_root / ".downloads" / OFFICIAL_PAIR_LISTS.filename
        archive_sha256 = file_sha256(downloaded) if downloaded.is_file() else None
        origin = {"url": OFFICIAL_URL, "archive": OFFICIAL_PAIR_LISTS.filename, "archive_sha256": archive_sha256}
    index = None
    if annotations_root is not None and annotation_test_files(annotations_root):
        index = load_annotations(annotations_root)
        check_category_names(index)
    manifest = _write_lists(data_root, "official", lists, index, images_root,
                            {"source": origin,
                             "annotation_files": dict(sorted(index.files.items())) if index else None})  # fmt: skip
    if progress:
        print("\n".join(report_lines(manifest, images_root)))
    return manifest


# -- reporting and the command --------------------------------------------------------------------------


def statistics_table(manifest: Mapping[str, Any]) -> str:
    from tabulate import tabulate

    rows = []
    for domain, info in manifest["domains"].items():
        kps = info.get("keypoints_per_pair") or {}
        rows.append([
            info["benchmark"], info["file"], info["categories"], info["images"], info["pairs"],
            kps.get("mean", "-"), kps.get("min", "-"), kps.get("max", "-"),
            info["missing_images"]["pairs_with_missing_images"] if info["missing_images"] else "-",
        ])  # fmt: skip
    headers = ["benchmark", "list", "categories", "images", "pairs", "kps/pair mean", "min", "max",
               "pairs missing images"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="github")


def report_lines(manifest: Mapping[str, Any], images_root: Path | None) -> list[str]:
    lines = [f"MP-100 pair lists ({manifest['kind']}):", statistics_table(manifest)]
    for domain, info in manifest["domains"].items():
        expected = OFFICIAL_RELEASE_SHA256[domain]
        if manifest["kind"] == "official" and not info["matches_marco_release"]:
            lines.append(f"warning: {info['file']} differs from MARCO's release (sha256 {info['sha256']}, "
                         f"released {expected}): results will not match the paper's pairs")  # fmt: skip
        if info["pairs"] < manifest.get("pairs_per_domain", info["pairs"]):
            lines.append(f"warning: {info['file']} has only {info['pairs']} pairs: too few eligible pairs")
    if not manifest.get("images_checked"):
        lines.append(f"images not checked: no image folder at {images_root}")
    else:
        missing = [line for info in manifest["domains"].values()
                   for line in describe_missing(info["missing_images"], images_root)]  # fmt: skip
        if missing:
            lines.append("missing images (their pairs will be reported as skipped when evaluating):")
            lines += [f"  {line}" for line in dict.fromkeys(missing)]
    return lines


@click.command("build-mp100")
@click.option("--annotations", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with MP-100's mp100_split{1..5}_test.json [default: <data root>/MP-100/annotations].")
@click.option("--images", type=click.Path(file_okay=False, path_type=Path),
              help="MP-100's image folder (category folders) [default: <data root>/MP-100/images].")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Datasets folder; default $CORRBENCH_DATA, then ~/.cache/corrbench/data.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the rebuilt lists (recorded; not used with --official).")
@click.option("--official", is_flag=True, help="Install MARCO's released lists (downloads mp100_pairs.zip).")
@click.option("--official-zip", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Install MARCO's released lists from a local copy of mp100_pairs.zip (offline).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the statistics table.")
def build_mp100_command(annotations, images, data_root, seed, official, official_zip, quiet) -> None:
    """Build MARCO's MP-100 benchmark pair lists into <data root>/MP-100/pairs/ (mp100_all/pairs/ in MARCO's layout).

    Without --official: rebuild the five lists from MP-100's test annotations (seeded, byte-identical every
    time). With --official / --official-zip: install the lists MARCO released, to evaluate the paper's pairs.
    """
    from ..data_root import resolve_data_root

    root = resolve_data_root(data_root)
    folders = locate_mp100(root)
    annotations = annotations or folders.annotations
    images = images or folders.images
    if official or official_zip:
        manifest = install_official_lists(root, zip_path=official_zip, annotations_root=annotations,
                                          images_root=images, progress=not quiet)  # fmt: skip
    else:
        manifest = build_mp100(annotations, images, root, seed=seed, progress=not quiet)
    if quiet:
        click.echo(statistics_table(manifest))
    click.echo(f"written: {pairs_dir(root)} ({manifest['kind']} lists; manifest {MANIFEST_FILE})")
    expected = {folders.annotations: annotations, folders.images: images}
    for place, given in expected.items():
        if Path(given).resolve() != place.resolve():
            click.echo(f"note: the mp100-* benchmarks read {place}; link it: ln -s {Path(given).resolve()} {place}")
