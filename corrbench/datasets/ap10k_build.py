"""Build the AP-10K correspondence benchmark (Zhang et al. 2024, GeoAware-SC) from the raw AP-10K download.

AP-10K (Yu et al. 2021) is an animal pose dataset: COCO keypoint files, 54 species in 23 families, 17 keypoints,
visibility ``v`` in {0, 1, 2}. GeoAware-SC's ``prepare_ap10k.ipynb`` turned it into image pairs, and MARCO's
``scripts/preprocess_ap10k.py`` is a copy of that notebook. This module applies the same protocol, but
deterministically: the result depends only on the annotation files, the seed and the crowd list.

Input (``ap-10k.zip``, Google Drive id ``1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad``, unzipped):

    <raw>/annotations/ap10k-{train,val,test}-split1.json     COCO: images, annotations, categories
    <raw>/data/<file_name>                                    images; file_name is the 12-digit image id + .jpg

Output (the folder layout both reference scripts write; corrbench's reader reads theirs, and with
``--path-prefix data/ap-10k/`` their loaders read this one):

    ImageAnnotation/<family>/<species>/<id:012d>.json         the image's first annotation merged with its
                                                              image record (image fields win, so "id" is the
                                                              image id) plus "name" (species) and
                                                              "supercategory" (family); crowd images also get
                                                              "is_crowd": 1, as the reference scripts add
    ImageAnnotation/<family>/<species>/{train,val,test}_filtered.txt   the species' split, one path a line
    JPEGImages/<family>/<species>/<id:012d>.jpg               hard links to the raw images (copies where links
                                                              are impossible); the raw download is left intact
    PairAnnotation/{trn,val,test}/<src>-<trg>:<species>.json            intra-species pairs
    PairAnnotation/{val,test}_cross_species/<src>-<trg>:<family>.json   cross-species pairs
    PairAnnotation/{val,test}_cross_family/<src>-<trg>:all.json         cross-family pairs
    manifest.json                                             rules, seed, crowd rule, input checksums,
                                                              statistics and the sha256 of the pair list

A pair file is ``{"src_json_path": ..., "trg_json_path": ...}``. corrbench writes these paths relative to the
dataset folder (``ImageAnnotation/Felidae/cat/000000000001.json``); GeoAware-SC writes them relative to its
repository (``data/ap-10k/ImageAnnotation/...``) and MARCO absolute, so the reader (``corrbench.datasets.ap10k``)
takes the part from the last ``ImageAnnotation`` component on. The reference loaders open the path as written,
from their repository root: ``path_prefix="data/ap-10k/"`` (``--path-prefix``) writes paths they can open
there (the pair set and its hash do not change).

The protocol (both reference scripts, verified in their code):

1. Merge the annotations of split1 in the order train, test, val; keep each image's first annotation.
2. Per species: drop crowd images, keep images whose COCO ``num_keypoints`` field is >= 3; of the rest, the last
   30 are test, the 20 before them val, the others train.
3. Intra-species pairs, per species and split: every unordered pair of images whose mutual visibility score
   ``sum_k (v_src,k / 2) * (v_trg,k / 2)`` is >= 3 (so a keypoint with v = 1 in one image counts half; with
   v in {0, 2} it is the number of keypoints visible in both). Val and test keep all of them; train keeps at
   most 50 x (number of train images of the species), sampled.
4. Cross-species pairs, per family with more than one species: pairs of images of two different species of
   the family (test and val lists), same score rule, at most 900 (test) / 400 (val) per family, sampled; each
   pair's direction is drawn at random.
5. Cross-family pairs, per pair of families: an image of the first family (source) and one of the second
   (target), same score rule, at most 30 (test) / 20 (val) per family pair, sampled.
6. Training readers skip argali sheep, black bear and king cheetah (too few images for a train list).

Where corrbench differs from the reference scripts, and why:

- Order. The scripts list each species' files in ``os.walk`` order, which is the file system's directory
  order (hash order on ext4), so their test/val/train images depend on the machine. corrbench sorts images by
  id (the same as by file name) and walks families and species in sorted order.
- Sampling. The scripts draw with Python's global ``random`` (GeoAware-SC seeds 42 per notebook cell; MARCO
  does not seed), so their draws also depend on the walk order. corrbench ranks candidate pairs by a keyed
  64-bit hash of (seed, pair folder, group, source id, target id) and keeps the lowest ranks; the direction of
  an intra- or cross-species pair is another hash bit. This is a uniform draw without replacement that does
  not depend on Python's ``random`` algorithms, iteration order, or on the other groups (adding an image to one
  species changes no other species' pairs). The default seed is 42, as GeoAware-SC's.
- Cross-species direction. GeoAware-SC's notebook computes a random swap but discards it (it assigns to the
  loop variable), so its sources always come from the first species of the combination; MARCO's copy applies
  the swap. corrbench applies it, as the notebook intends.
- Crowd images: nothing differs by default. Both scripts read GeoAware-SC's ``data/ap-10k_is_crowd.txt``
  (1,847 zero-padded 12-digit image ids, one a line, LF, no blank lines, unsorted: grouped by species in the
  authors' directory order; MARCO's data guide fetches the same file from GeoAware-SC's master branch) and
  drop an image when its annotation file's stem is on it, before the keypoint filter. corrbench downloads that
  file when building (``CROWD_LIST_SOURCE``: pinned to its commit, size and sha256) into
  ``<data root>/ap-10k_is_crowd.txt``, GeoAware-SC's own place for it relative to its data folder. It is
  downloaded, not shipped, because it carries no license. Offline, save it there by hand. ``--crowd-list PATH``
  builds with another copy or another list; ``--crowd-rule derived`` instead treats an image as crowd when the
  merged split1 files hold more than one annotation for it or any of its annotations has ``iscrowd`` = 1. On
  the real annotations the derived rule disagrees with the list both ways (images with two separate animals
  that the list keeps, listed images with one annotation), so most species' test lists change. The manifest
  records the rule (``crowd.rule``: ``published-list``, ``other-list`` or ``derived``), the list's sha256 and
  how far the list and the derived rule agree; readers copy the rule into every result, and both warn when it
  is not the published list.
- Path fields in pair files are relative to the dataset folder (portable), unless a path prefix is given.
- Missing images, malformed COCO records and inconsistent ids are errors, never silently dropped: a
  benchmark must not depend on which files happened to be present.

Splits of AP-10K's own pose benchmark (split2, split3) are not used, as in both references.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Sequence

import click
import numpy as np

from corrbench.datasets.coco import read_coco
from corrbench.datasets.download import DatasetSource, fetch_source
from corrbench.errors import ConfigError, DataError
from corrbench.files import file_sha256, replacing_directory

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------- facts

# <data root>/AP-10K-raw: the unzipped download. Not "ap-10k" (the zip's own name), which a case-insensitive
# file system (macOS, Windows) would take for the built folder "AP-10K".
RAW_FOLDER = "AP-10K-raw"
BUILT_FOLDER = "AP-10K"  # <data root>/AP-10K: what this module writes and the adapter reads
DRIVE_ID = "1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad"
#: Merged in this order; "first annotation per image" refers to it (both reference scripts).
RAW_ANNOTATION_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")
#: GeoAware-SC's crowd list at the commit that added it (its only version; see the module docstring).
CROWD_LIST_COMMIT = "166f87304fcfd957c49fbe1bc4dae699bf97dff2"
CROWD_LIST_URL = f"https://raw.githubusercontent.com/Junyi42/GeoAware-SC/{CROWD_LIST_COMMIT}/data/ap-10k_is_crowd.txt"
CROWD_LIST_SOURCE = DatasetSource(
    name="GeoAware-SC's AP-10K crowd list (ap-10k_is_crowd.txt)",
    url=CROWD_LIST_URL,
    filename="ap-10k_is_crowd.txt",
    kind="file",
    provides="ap-10k_is_crowd.txt",
    sha256="64444a59008ec9402b9409dce6234af946a2f480a8348d1751d22af10c812ee6",
    size=24011,
)
#: ``--crowd-rule``: the list (GeoAware-SC's published one unless --crowd-list names another) or derived.
CROWD_RULES = ("list", "derived")
DERIVED_CROWD_RULE = "more than one annotation in the merged split1 files, or iscrowd = 1"

KEYPOINT_NAMES = (
    "left_eye", "right_eye", "nose", "neck", "root_of_tail",
    "left_shoulder", "left_elbow", "left_front_paw", "right_shoulder", "right_elbow", "right_front_paw",
    "left_hip", "left_knee", "left_back_paw", "right_hip", "right_knee", "right_back_paw",
)  # fmt: skip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
#: No train list in the reference builds (too few images), skipped by GeoAware-SC's and MARCO's training readers.
TRAINING_EXCLUDED_SPECIES = ("argali sheep", "black bear", "king cheetah")

IMAGE_DIR = "ImageAnnotation"
JPEG_DIR = "JPEGImages"
PAIR_DIR = "PairAnnotation"
MANIFEST = "manifest.json"
SPLIT_LISTS = {"trn": "train_filtered.txt", "val": "val_filtered.txt", "test": "test_filtered.txt"}
CROSS_SPECIES_SUFFIX = "_cross_species"
CROSS_FAMILY_SUFFIX = "_cross_family"
CROSS_FAMILY_CATEGORY = "all"
MANIFEST_FORMAT = 2  # 2: crowd.rule is published-list | other-list | derived


@dataclass(frozen=True)
class BuildRules:
    """The numbers of the protocol (defaults: GeoAware-SC's). Tests shrink them to keep fixtures small."""

    test_per_species: int = 30
    val_per_species: int = 20
    min_visible_keypoints: int = 3  # image filter (COCO num_keypoints) and pair filter (mutual score)
    train_pairs_per_image: int = 50
    cross_species_pairs: tuple[tuple[str, int], ...] = (("val", 400), ("test", 900))  # per family
    cross_family_pairs: tuple[tuple[str, int], ...] = (("test", 30), ("val", 20))  # per family pair

    def __post_init__(self) -> None:
        numbers = [self.test_per_species, self.val_per_species, self.min_visible_keypoints,
                   self.train_pairs_per_image, *dict(self.cross_species_pairs).values(),
                   *dict(self.cross_family_pairs).values()]
        if any(not isinstance(n, int) or n < 0 for n in numbers):
            raise ValueError(f"BuildRules numbers must be non-negative integers, got {self}")


# ------------------------------------------------------------------------------------------------ reading raw


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


# ---------------------------------------------------------------------------------------------- the protocol


def split_species(items: Sequence[Any], test_size: int = 30, val_size: int = 20) -> tuple[list, list, list]:
    """The last ``test_size`` items are test, the ``val_size`` before them val, the rest train.

    With fewer items, test takes what there is first, then val (the reference's ``min`` arithmetic).
    """
    n = len(items)
    n_test = min(test_size, n)
    n_val = min(val_size, n - n_test)
    n_train = n - n_test - n_val
    return list(items[:n_train]), list(items[n_train:n_train + n_val]), list(items[n_train + n_val:])


def mutual_visibility_score(v_src: np.ndarray, v_trg: np.ndarray) -> np.ndarray:
    """``4 * sum_k (v_src/2)(v_trg/2)`` for rows of visibility vectors, exactly, in integers (so >= 4 * 3)."""
    return np.asarray(v_src, dtype=np.int64) @ np.asarray(v_trg, dtype=np.int64).T


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014): a fixed, well-mixed bijection on uint64 arrays."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stream(seed: int, *names: str) -> np.uint64:
    digest = hashlib.sha256("\0".join([str(seed), *names]).encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def pair_keys(seed: int, stream: Sequence[str], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A pseudo-random uint64 per (first, second) image-id pair, fixed by the seed and the stream names."""
    with np.errstate(over="ignore"):
        key = _splitmix64(_stream(seed, *stream) ^ np.asarray(first, dtype=np.uint64))
        return _splitmix64(key ^ np.asarray(second, dtype=np.uint64))


@dataclass
class Candidates:
    """Candidate pairs of one group (species, family or family pair), as image-id arrays."""

    src: np.ndarray
    trg: np.ndarray

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def concat(self, other: "Candidates") -> "Candidates":
        return Candidates(np.concatenate([self.src, other.src]), np.concatenate([self.trg, other.trg]))

    def sample(self, limit: int | None, seed: int, stream: Sequence[str]) -> "Candidates":
        """At most ``limit`` pairs, a uniform draw without replacement ranked by ``pair_keys``."""
        if limit is None or len(self) <= limit:
            return self
        keys = pair_keys(seed, stream, self.src, self.trg)
        order = np.lexsort((self.trg, self.src, keys))[:limit]
        return Candidates(self.src[order], self.trg[order])

    def randomly_directed(self, seed: int, stream: Sequence[str]) -> "Candidates":
        """Swap source and target of each pair on a pseudo-random bit."""
        swap = (pair_keys(seed, stream, self.src, self.trg) & np.uint64(1)).astype(bool)
        return Candidates(np.where(swap, self.trg, self.src), np.where(swap, self.src, self.trg))


def _ids(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.asarray([r.image_id for r in records], dtype=np.int64)


def _visibility(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.stack([r.visibility for r in records]) if records else np.zeros((0, NUM_KEYPOINTS), dtype=np.int64)


def _within(records: Sequence[ImageRecord], min_visible: int) -> Candidates:
    """Unordered pairs (earlier id first) of one list whose mutual score passes."""
    if len(records) < 2:
        return Candidates.empty()
    ids = _ids(records)
    score = mutual_visibility_score(_visibility(records), _visibility(records))
    i, j = np.triu_indices(len(records), k=1)
    keep = score[i, j] >= 4 * min_visible
    return Candidates(ids[i[keep]], ids[j[keep]])


def _across(first: Sequence[ImageRecord], second: Sequence[ImageRecord], min_visible: int) -> Candidates:
    """Every (image of ``first``, image of ``second``) pair whose mutual score passes."""
    if not first or not second:
        return Candidates.empty()
    score = mutual_visibility_score(_visibility(first), _visibility(second))
    i, j = np.nonzero(score >= 4 * min_visible)
    return Candidates(_ids(first)[i], _ids(second)[j])


@dataclass
class Layout:
    """What the builder decided, before anything is written."""

    splits: dict[str, dict[str, dict[str, list[ImageRecord]]]]  # family -> species -> split -> images
    pairs: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # folder -> (src, trg, category)
    per_species: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_splits(raw: RawAP10K, crowd: set[int], rules: BuildRules) -> Layout:
    """Step 2: per species (sorted), drop crowd images and those with too few keypoints, then split by id."""
    grouped: dict[str, dict[str, list[ImageRecord]]] = defaultdict(lambda: defaultdict(list))
    for image_id in sorted(raw.images):
        record = raw.images[image_id]
        record.crowd = image_id in crowd
        grouped[record.family][record.species].append(record)
    layout = Layout(splits={})
    for family in sorted(grouped):
        layout.splits[family] = {}
        for species in sorted(grouped[family]):
            records = grouped[family][species]
            kept = [r for r in records if not r.crowd and r.num_keypoints >= rules.min_visible_keypoints]
            train, val, test = split_species(kept, rules.test_per_species, rules.val_per_species)
            layout.splits[family][species] = {"trn": train, "val": val, "test": test}
            crowd_count = sum(r.crowd for r in records)
            layout.per_species[species] = {
                "family": family, "annotated": len(records), "crowd": crowd_count,
                "too_few_keypoints": len(records) - crowd_count - len(kept),
                "trn": len(train), "val": len(val), "test": len(test),
            }
    return layout


def plan_pairs(layout: Layout, rules: BuildRules, seed: int) -> None:
    """Steps 3-5: every pair folder's (source id, target id, category) list."""
    min_vis = rules.min_visible_keypoints
    for split in ("trn", "val", "test"):
        pairs: list[tuple[int, int, str]] = []
        for family, species_splits in layout.splits.items():
            for species, splits in species_splits.items():
                records = splits[split]
                limit = rules.train_pairs_per_image * len(records) if split == "trn" else None
                chosen = (_within(records, min_vis)
                          .randomly_directed(seed, (split, species, "direction"))
                          .sample(limit, seed, (split, species, "sample")))
                pairs += [(int(s), int(t), species) for s, t in zip(chosen.src, chosen.trg)]
        layout.pairs[split] = pairs
    for split, limit in rules.cross_species_pairs:
        folder = split + CROSS_SPECIES_SUFFIX
        pairs = []
        for family, species_splits in layout.splits.items():
            if len(species_splits) < 2:
                continue
            candidates = Candidates.empty()
            for first, second in combinations(sorted(species_splits), 2):
                candidates = candidates.concat(
                    _across(species_splits[first][split], species_splits[second][split], min_vis))
            chosen = (candidates.randomly_directed(seed, (folder, family, "direction"))
                      .sample(limit, seed, (folder, family, "sample")))
            pairs += [(int(s), int(t), family) for s, t in zip(chosen.src, chosen.trg)]
        layout.pairs[folder] = pairs
    for split, limit in rules.cross_family_pairs:
        folder = split + CROSS_FAMILY_SUFFIX
        members = {family: [r for species in sorted(by_species) for r in by_species[species][split]]
                   for family, by_species in layout.splits.items()}
        pairs = []
        for first, second in combinations(sorted(members), 2):
            chosen = _across(members[first], members[second], min_vis).sample(limit, seed, (folder, first, second))
            pairs += [(int(s), int(t), CROSS_FAMILY_CATEGORY) for s, t in zip(chosen.src, chosen.trg)]
        layout.pairs[folder] = pairs


def pair_stem(src: int, trg: int, category: str) -> str:
    return f"{src:012d}-{trg:012d}:{category}"


def pair_list_sha256(pairs: dict[str, list[tuple[int, int, str]]]) -> str:
    """sha256 of the sorted ``<folder>/<pair stem>`` lines: the identity of a build's pair set."""
    lines = sorted(f"{folder}/{pair_stem(*p)}\n" for folder, items in pairs.items() for p in items)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------- writing


def _place_image(source: Path, destination: Path) -> None:
    """Hard-link (no extra disk space, raw stays intact), or copy when the file systems differ."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="file", leave=False)


def _write(tmp: Path, raw: RawAP10K, layout: Layout, progress: bool, prefix: str) -> None:
    missing = [raw.root / "data" / r.file_name for r in raw.images.values()
               if not (raw.root / "data" / r.file_name).is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} annotated AP-10K image(s) missing under {raw.root / 'data'}: {listed}",
            hint="the download is incomplete; extract ap-10k.zip again (all of data/ is needed)",
        )
    records = [raw.images[i] for i in sorted(raw.images)]
    for record in _progress(records, len(records), "AP-10K images", progress):
        json_file, jpeg_file = tmp / record.json_path, tmp / record.jpeg_path
        json_file.parent.mkdir(parents=True, exist_ok=True)
        jpeg_file.parent.mkdir(parents=True, exist_ok=True)
        data = {**record.record, "is_crowd": 1} if record.crowd else record.record
        json_file.write_text(json.dumps(data, indent=4), encoding="utf-8")
        _place_image(raw.root / "data" / record.file_name, jpeg_file)
    for family, species_splits in layout.splits.items():
        for species, splits in species_splits.items():
            folder = tmp / IMAGE_DIR / family / species
            for split, name in SPLIT_LISTS.items():
                lines = "".join(f"{prefix}{r.json_path}\n" for r in splits[split])
                (folder / name).write_text(lines, encoding="utf-8")
    items = [(folder, pair) for folder, pairs in layout.pairs.items() for pair in pairs]
    for folder in layout.pairs:
        (tmp / PAIR_DIR / folder).mkdir(parents=True, exist_ok=True)
    for folder, (src, trg, category) in _progress(items, len(items), "AP-10K pairs", progress):
        content = {"src_json_path": prefix + raw.images[src].json_path,
                   "trg_json_path": prefix + raw.images[trg].json_path}
        (tmp / PAIR_DIR / folder / f"{pair_stem(src, trg, category)}.json").write_text(
            json.dumps(content, indent=4), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- the build


def published_crowd_list(data_root: Path, progress: bool = True) -> Path:
    """GeoAware-SC's crowd list under ``data_root`` (downloaded when absent), checked against its pinned sha256."""
    source = CROWD_LIST_SOURCE
    try:
        path = fetch_source(source, data_root, progress=progress)
    except DataError as exc:
        alternatives = ("or build without downloading it: --crowd-list PATH (a copy elsewhere) or --crowd-rule "
                        "derived (not the papers' test lists)")
        raise DataError(exc.message, hint=f"{exc.hint}; {alternatives}" if exc.hint else alternatives) from None
    digest = file_sha256(path)
    if digest != source.sha256:
        raise DataError(f"{path} is not GeoAware-SC's published crowd list (sha256 {digest}, expected "
                        f"{source.sha256})",
                        hint=f"delete it to download the list again from {source.url}, or pass it with "
                             "--crowd-list to build with it as it is (recorded as another list)")
    return path


def _crowd_set(raw: RawAP10K, rule: str, crowd_list: Path | None, data_root: Path,
               progress: bool) -> tuple[set[int], dict[str, Any]]:
    """The crowd image ids and the manifest's description of where they came from."""
    derived = {i for i, n in raw.annotation_counts.items() if n > 1} | raw.iscrowd_ids
    if rule not in CROWD_RULES:
        raise ConfigError(f"unknown crowd rule {rule!r}", hint=f"use one of {', '.join(CROWD_RULES)}")
    if rule == "derived":
        if crowd_list is not None:
            raise ConfigError("--crowd-list and --crowd-rule derived exclude each other",
                              hint="a crowd list is only read by the list rule (the default)")
        return derived, {"rule": "derived", "definition": DERIVED_CROWD_RULE, "ids": len(derived),
                         "published_list_sha256": CROWD_LIST_SOURCE.sha256}
    path = Path(crowd_list) if crowd_list is not None else published_crowd_list(data_root, progress)
    listed, digest = read_crowd_list(path)
    annotated = listed & set(raw.images)
    return listed, {
        "rule": "published-list" if digest == CROWD_LIST_SOURCE.sha256 else "other-list",
        "source": str(path) if crowd_list is not None else CROWD_LIST_SOURCE.url,
        "list_sha256": digest, "published_list_sha256": CROWD_LIST_SOURCE.sha256,
        "ids": len(listed), "ids_annotated": len(annotated),
        "derived": {"definition": DERIVED_CROWD_RULE, "ids": len(derived)},
        "agreement": {"listed_and_derived": len(listed & derived), "listed_only": len(annotated - derived),
                      "derived_only": len(derived - listed)},
    }


def crowd_rule_of(manifest: dict[str, Any] | None) -> str:
    """``published-list``, ``other-list``, ``derived`` or ``not recorded`` (no manifest: e.g. a folder written
    by GeoAware-SC's or MARCO's script). Reads format-1 manifests too (rule "list" or "derived: ...")."""
    crowd = (manifest or {}).get("crowd")
    rule = crowd.get("rule") if isinstance(crowd, dict) else None
    if not isinstance(rule, str):
        return "not recorded"
    if rule == "list":  # format 1
        return "published-list" if crowd.get("list_sha256") == CROWD_LIST_SOURCE.sha256 else "other-list"
    if rule.startswith("derived"):
        return "derived"
    return rule


def crowd_warning(manifest: dict[str, Any] | None) -> str | None:
    """What to tell the user when a build's crowd images are not GeoAware-SC's published list, else None."""
    rule = crowd_rule_of(manifest)
    consequence = ("so its test lists (and every pair) differ from those of GeoAware-SC, MARCO and the papers; "
                   "`corrbench build-ap10k` without crowd options builds theirs")
    if rule == "derived":
        return f"AP-10K crowd images were derived from the annotations ({DERIVED_CROWD_RULE}), {consequence}"
    if rule == "other-list":
        crowd = manifest["crowd"]
        return (f"AP-10K crowd images come from {crowd.get('source', 'a list')} (sha256 {crowd.get('list_sha256')}), "
                f"not GeoAware-SC's published list, {consequence}")
    return None


def build_ap10k(raw_root: Path, out_root: Path, *, seed: int = 42, progress: bool = True,
                crowd_rule: str = "list", crowd_list: Path | None = None, data_root: Path | None = None,
                path_prefix: str = "", rules: BuildRules = BuildRules()) -> dict[str, Any]:
    """Build the benchmark from the raw download at ``raw_root`` into ``out_root`` (replaced atomically).

    ``crowd_rule``: ``"list"`` drops the images of a crowd list: ``crowd_list`` if given, else GeoAware-SC's
    published list, downloaded into ``data_root`` (default: the folder holding ``out_root``) on first use;
    ``"derived"`` derives them from the annotations (see the module docstring), which logs a warning, as does
    a list other than the published one.
    ``path_prefix``: written before the ``ImageAnnotation/...`` paths of pair files and split lists
    (``"data/ap-10k/"`` for the reference loaders). Returns the manifest (also written to
    ``out_root/manifest.json``). The same inputs and arguments give byte-identical output on any machine.
    Raises DataError for a missing or malformed download.
    """
    if "\\" in path_prefix or (path_prefix and not path_prefix.endswith("/")):
        raise DataError(f"path prefix {path_prefix!r} must use '/' and end with '/'", hint="e.g. data/ap-10k/")
    out_root = Path(out_root)
    raw = read_raw(Path(raw_root))
    data_root = Path(data_root) if data_root is not None else out_root.parent
    crowd, crowd_info = _crowd_set(raw, crowd_rule, crowd_list, data_root, progress)
    layout = plan_splits(raw, crowd, rules)
    plan_pairs(layout, rules, seed)
    manifest = _manifest(raw, layout, rules, seed, crowd_info, path_prefix)
    warning = crowd_warning(manifest)
    if warning:
        log.warning("warning: %s", warning)

    with replacing_directory(out_root) as tmp:  # readers see the old build or the new one, never a mix
        _write(tmp, raw, layout, progress, path_prefix)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _manifest(raw: RawAP10K, layout: Layout, rules: BuildRules, seed: int, crowd_info: dict[str, Any],
              path_prefix: str) -> dict[str, Any]:
    counts = {folder: len(items) for folder, items in layout.pairs.items()}
    per_species = layout.per_species
    images = {key: sum(s[key] for s in per_species.values())
              for key in ("annotated", "crowd", "too_few_keypoints", "trn", "val", "test")}
    return {
        "dataset": "AP-10K correspondence benchmark (GeoAware-SC protocol)",
        "format": MANIFEST_FORMAT,
        "builder": "corrbench.datasets.ap10k_build",
        "seed": seed,
        "rules": {**asdict(rules), "cross_species_pairs": dict(rules.cross_species_pairs),
                  "cross_family_pairs": dict(rules.cross_family_pairs)},
        "crowd": crowd_info,
        "path_prefix": path_prefix,
        "inputs": raw.checksums,
        "pair_list_sha256": pair_list_sha256(layout.pairs),
        "statistics": {
            "families": len(layout.splits),
            "species": len(per_species),
            "images": images,
            "pairs": {
                "intra-species": {split: counts[split] for split in ("trn", "val", "test")},
                "cross-species": {s: counts[s + CROSS_SPECIES_SUFFIX] for s, _ in rules.cross_species_pairs},
                "cross-family": {s: counts[s + CROSS_FAMILY_SUFFIX] for s, _ in rules.cross_family_pairs},
            },
            "per_species": dict(sorted(per_species.items())),
        },
    }


def format_statistics(manifest: dict[str, Any], out_root: Path) -> str:
    """A short human summary of a build."""
    stats = manifest["statistics"]
    images = stats["images"]
    crowd = manifest["crowd"]
    lines = [
        f"AP-10K benchmark written to {out_root} (seed {manifest['seed']})",
        f"  {stats['species']} species in {stats['families']} families; {images['annotated']} annotated images, "
        f"{images['crowd']} crowd and {images['too_few_keypoints']} with < "
        f"{manifest['rules']['min_visible_keypoints']} keypoints dropped",
        f"  images per split: trn {images['trn']}, val {images['val']}, test {images['test']}",
        f"  crowd images: {crowd_rule_of(manifest)} ({crowd['ids']} ids"
        + (f", sha256 {crowd['list_sha256']})" if "list_sha256" in crowd else ")"),
        "  pairs:",
    ]
    for setting, splits in stats["pairs"].items():
        lines.append(f"    {setting:<14} " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    lines.append(f"  pair list sha256: {manifest['pair_list_sha256']}")
    return "\n".join(lines)


@click.command("build-ap10k")
@click.option("--raw", "raw", type=click.Path(file_okay=False, path_type=Path),
              help=f"The unzipped AP-10K download (annotations/, data/); default <data root>/{RAW_FOLDER}.")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Where datasets live; the benchmark goes to <data root>/AP-10K. Default $CORRBENCH_DATA, "
                   "then ~/.cache/corrbench/data.")
@click.option("--seed", default=42, show_default=True, type=int, help="Seed of the pair sampling (recorded).")
@click.option("--crowd-rule", type=click.Choice(CROWD_RULES), default="list", show_default=True,
              help="list: drop the images of GeoAware-SC's crowd list (downloaded to <data root>/"
                   f"{CROWD_LIST_SOURCE.provides} on first use), as the papers' builds do; derived: images with "
                   "more than one annotation (or iscrowd), which gives other test lists (warned, recorded).")
@click.option("--crowd-list", type=click.Path(dir_okay=False, path_type=Path),
              help="Read the crowd list from this file instead of downloading it (one image id a line); "
                   "a list other than the published one is warned about and recorded.")
@click.option("--path-prefix", default="", metavar="PREFIX",
              help="Written before the ImageAnnotation/... paths in pair files; data/ap-10k/ lets GeoAware-SC's "
                   "and MARCO's loaders read the folder as their data/ap-10k.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def build_ap10k_command(raw: Path | None, data_root: Path | None, seed: int, crowd_rule: str,
                        crowd_list: Path | None, path_prefix: str, quiet: bool) -> None:
    """Build the AP-10K correspondence benchmark (intra-species, cross-species, cross-family pairs)."""
    from corrbench.data_root import resolve_data_root

    root = resolve_data_root(data_root)
    out_root = root / BUILT_FOLDER
    manifest = build_ap10k(raw or root / RAW_FOLDER, out_root, seed=seed, progress=not quiet,
                           crowd_rule=crowd_rule, crowd_list=crowd_list, data_root=root, path_prefix=path_prefix)
    click.echo(format_statistics(manifest, out_root))
