"""MARCO's MP-100 benchmark as data: folders, file names, the pair-list format, domains and categories.

MARCO (Supp. G) turns MP-100 (Xu et al., "Pose for Everything", ECCV 2022; 100 categories, COCO-format
keypoints) into five correspondence benchmarks of 2,000 same-category image pairs each. The reader
(``adapter.py``), the builder (``build.py``) and the installer of MARCO's released lists (``release.py``)
import these names; the reader imports neither writer's code for them.

The five lists are written in MARCO's exact format (a JSON list of ``{"episode_idx", "category_id", "src_file",
"trg_file"}``, ``json.dumps(..., indent=2)``, no trailing newline) into ``<data root>/MP-100/pairs/``, with a
``manifest.json`` naming the kind of lists installed (``"official"`` or ``"rebuilt"``), the sha256 of every
list and per-domain statistics. The folder is replaced as a whole, so a reader never sees lists of one kind
with the manifest of the other.

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

The five domains (``DOMAINS``) and their categories (``CATEGORIES``): derived from the category ids in MARCO's
released lists and MP-100's category names. Human face is MP-100 category 40 (300W, 68 landmarks; MP-100 has a
second category named "face", id 18, supercategory "person", whose 100 annotations in ``mp100_split5_test.json``
hold 19 keypoints each on images under ``amur_tiger_body/``: not used); apparel is the 12 DeepFashion2
categories without ``shorts``; animal body is the 29 AP-10K bodies left after the overlaps with SPair-71k's
training classes (``SPAIR_OVERLAP``, the paper's list) plus fly, locust (DeepPoseKit) and macaque
(MacaquePose); animal face the 26 AnimalWeb faces left; home furniture is sofa (the paper's "couch"), table,
bed and swivelchair, not chair. Categories of no domain (birds, person, hand, the id-18 face, chair, shorts,
suv) are simply not used.

Images: MP-100 ships annotations only; the images come from the source datasets and must be assembled under
the images folder (``IMAGE_SOURCES`` says where each comes from).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ...errors import ConfigError, DataError
from ...files import UnreadableJSON, decode_json, file_sha256, read_json
from ..download import DatasetSource


DATA_DIR = "MP-100"  # the benchmarks' data_dir under the data root
ANNOTATIONS_DIR = "annotations"
IMAGES_DIR = "images"
PAIRS_DIR = "pairs"
MARCO_DATA_DIR = "mp100_all"  # MARCO: data/mp100_all/{annotations,mp100,pairs}
MARCO_IMAGES_DIR = "mp100"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1

KINDS = ("official", "rebuilt")
ENTRY_FIELDS = ("episode_idx", "category_id", "src_file", "trg_file")  # MARCO's pair-list entries, in order
TEST_FILE = re.compile(r"^mp100_split(\d+)_test\.json$")

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


def annotation_test_files(annotations_root: Path) -> list[Path]:
    """``mp100_split<k>_test.json`` files in split order."""
    root = Path(annotations_root)
    found = [p for p in root.glob("mp100_split*_test.json") if TEST_FILE.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda p: int(TEST_FILE.match(p.name).group(1)))


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
        data = decode_json(raw, label)
    except UnreadableJSON as exc:
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


# -- where an arrangement keeps its parts, and which kind of list is installed --------------------------


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
        data = read_json(Path(directory) / MANIFEST_FILE)
    except UnreadableJSON:
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
