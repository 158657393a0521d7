"""AP-10K's correspondence benchmark as data: folder and file names, JSON fields, keypoints, the crowd list.

The builder (``build.py``) writes this layout and the reader (``adapter.py``) reads it; both import the names
from here, so neither knows the other. The layout is the one GeoAware-SC's ``prepare_ap10k.ipynb`` and MARCO's
``scripts/preprocess_ap10k.py`` write, so the reader reads their folders too.

Input (``ap-10k.zip``, Google Drive id ``1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad``, unzipped)::

    <raw>/annotations/ap10k-{train,val,test}-split1.json     COCO: images, annotations, categories
    <raw>/data/<file_name>                                    images; file_name is the 12-digit image id + .jpg

Output (``<data root>/AP-10K``)::

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
repository (``data/ap-10k/ImageAnnotation/...``) and MARCO absolute, so the reader takes the part from the last
``ImageAnnotation`` component on.

The manifest's crowd record says which crowd rule built the folder; ``crowd_rule_of`` and ``crowd_warning``
read it (formats 1 and 2) for the builder's summary and for every result's provenance.
"""

from __future__ import annotations

from typing import Any

from ..download import DatasetSource

# <data root>/AP-10K-raw: the unzipped download. Not "ap-10k" (the zip's own name), which a case-insensitive
# file system (macOS, Windows) would take for the built folder "AP-10K".
RAW_FOLDER = "AP-10K-raw"
BUILT_FOLDER = "AP-10K"  # <data root>/AP-10K: what the builder writes and the adapter reads
DRIVE_ID = "1-FNNGcdtAQRehYYkGY1y4wzFNg4iWNad"
#: Merged in this order; "first annotation per image" refers to it (both reference scripts).
RAW_ANNOTATION_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")
#: GeoAware-SC's crowd list at the commit that added it (its only version; see build.py's docstring).
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
#: Left/right partners: a horizontally flipped animal's left eye is where the original's right eye was mirrored
#: to (GeoAware-SC ``utils/utils_geoware.py`` ``AP10K_FLIP``, indices turned into the names above; used by the
#: pose-aware flip augmentation, ``corrbench.train.data``). Eyes, shoulders, elbows, knees, paws and hips pair up;
#: nose, neck and root of tail stay themselves. Keyed by name, the table cannot shift: GeoAware-SC applies its
#: indices after ``load_ap10k_data`` drops the keypoints no image of a species annotates, which would shift them
#: for a species lacking one.
FLIP_PAIRS = (
    ("left_eye", "right_eye"), ("left_shoulder", "right_shoulder"), ("left_elbow", "right_elbow"),
    ("left_knee", "right_knee"), ("left_front_paw", "right_front_paw"), ("left_back_paw", "right_back_paw"),
    ("left_hip", "right_hip"),
)  # fmt: skip
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

#: The adapter's ``setting`` option -> the suffix of its pair folders (``test`` + suffix).
SETTINGS = {"intra-species": "", "cross-species": CROSS_SPECIES_SUFFIX, "cross-family": CROSS_FAMILY_SUFFIX}
SPLITS = {"intra-species": ("trn", "val", "test"), "cross-species": ("val", "test"), "cross-family": ("val", "test")}
#: The fields of an image annotation file that a pair needs.
IMAGE_FIELDS = ("keypoints", "bbox", "width", "height")
#: A pair file's fields: the source's and the target's image annotation file.
PAIR_PATH_FIELDS = {"src": "src_json_path", "trg": "trg_json_path"}


def pair_stem(src: int, trg: int, category: str) -> str:
    return f"{src:012d}-{trg:012d}:{category}"


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

