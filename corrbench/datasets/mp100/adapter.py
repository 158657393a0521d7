"""MP-100 as MARCO's generalisation benchmark: reads the installed pair lists and MP-100's COCO annotations.

The lists (``<data root>/MP-100/pairs/pairs_<domain>.json``) come from ``corrbench build-mp100``: MARCO's
released lists (``--official``, ``release.py``) or lists rebuilt with the paper's curation (``build.py``); the
domains, categories and file names come from ``layout.py``, the annotation index from ``annotations.py``.
Each entry names two images of one category, relative to ``MP-100/images/``; their keypoints and boxes come
from MP-100's ``mp100_split*_test.json`` files in ``MP-100/annotations/``. MARCO's arrangement (``mp100_all/{annotations,mp100,pairs}``) is read too
(``layout.locate_mp100``); the arrangement read is returned with the pairs (``PairSet.notes``: ``layout``,
``folder``) and so recorded in the result.

Keypoints are matched BY INDEX, a deliberate difference from MARCO's loader. An MP-100 category has a fixed
list of K keypoints, so row k of the source and row k of the target are the same semantic point; a row is
scored when it is visible (COCO ``v > 0``) in both images, and target rows visible only in the target stay in
the pair as PCK-dagger candidates. MARCO's loader instead concatenates the visible keypoints of each image
and truncates both lists to the shorter length, which pairs the i-th visible source point with the i-th
visible target point: right only when both images share the visibility pattern. With source visibility
``1 1 0 1`` and target ``1 0 1 1`` it scores (0, 0), (1, 2) and (3, 3) -- keypoint 1 against keypoint 2 --
where corrbench scores keypoints 0 and 3. Numbers therefore differ from MARCO's code on pairs with
different visibility patterns, by design.

One object per image: the annotation of the pair's category with the most visible keypoints (ties: lowest
annotation id). Coordinates are used as annotated, as every reference loader does. The PCK threshold is
that target object's box: COCO ``[x, y, w, h]`` becomes ``[x, y, x + w, y + h]``, so ``T = max(w, h)``
(MARCO takes the largest box side over every instance of the image, the same for single-object images).

Options: ``domain`` (a key of ``layout.DOMAINS``: human_face, clothing, animal_body_unseen,
animal_face, furniture) and ``pairs``: ``"official"`` (MARCO's release; what the mp100-* benchmarks use),
``"rebuilt"``, or None (whatever is installed). The kind read is part of every pair id
(``<kind>:<episode>:<src_file>:<trg_file>``), so results of the two kinds never share a pair fingerprint,
a run directory or a prediction cache. ``subset`` is a comma-separated list of MP-100 category names.

Skipped pairs, by reason: "malformed pair list entry", "unknown category" (a category id that is not one
of the domain's), "missing annotation" (no instance of the category for that image in the test files),
"malformed annotation" (the image's annotation was left out as malformed -- the detail says which field --
or source and target have different keypoint counts), "missing image", "duplicate pair".
"""

from __future__ import annotations

import functools

from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from ...types import Pair
from ..base import DatasetAdapter, PairSet, SkippedPair
from ..download import DatasetSource
from .annotations import AnnotationIndex, Instance, check_category_names, load_annotations
from .layout import (
    ANNOTATIONS_DIR,
    ANNOTATIONS_URL,
    CATEGORIES,
    CATEGORY_BY_ID,
    DATA_DIR,
    IMAGES_DIR,
    KINDS,
    OFFICIAL_PAIR_LISTS,
    Folders,
    PairEntry,
    annotation_test_files,
    check_domain,
    decode_pair_list,
    list_kind,
    locate_mp100,
    parse_entry,
)
from .release import install_official_lists

MP100_ANNOTATIONS = DatasetSource(
    name="MP-100 annotation files",
    url=None,
    filename="mp100_annotations",
    kind="file",
    provides=f"{DATA_DIR}/{ANNOTATIONS_DIR}",
    manual=(
        f"download the Google Drive folder {ANNOTATIONS_URL} (e.g. `gdown --folder <url>`) and put its "
        "mp100_split{1..5}_{train,val,test}.json files in this folder (only the *_test.json files are read)"
    ),
)
MP100_IMAGES = DatasetSource(
    name="MP-100 images",
    url=None,
    filename="mp100_images",
    kind="file",
    provides=f"{DATA_DIR}/{IMAGES_DIR}",
    manual=(
        "assemble the category image folders from the source datasets (AP-10K, DeepFashion2 with its password, "
        "AnimalWeb and 300W via OpenXLab, Keypoint-5, DeepPoseKit-Data, MacaquePose); `corrbench build-mp100` "
        "prints which folders are missing and where each comes from"
    ),
)


class MP100(DatasetAdapter):
    """Reader of MARCO's MP-100 pair lists (see the module docstring)."""

    name = "MP-100"
    instructions = (
        "MARCO's MP-100 benchmark reads <data root>/MP-100/: annotations/ (MP-100's COCO files), images/ (the "
        "category folders, assembled from the source datasets) and pairs/ (installed by `corrbench build-mp100 "
        "--official`, MARCO's released lists, or rebuilt by `corrbench build-mp100`); MARCO's arrangement, "
        "<data root>/mp100_all/{annotations,mp100,pairs}, is read as it is"
    )
    sources = (MP100_ANNOTATIONS, MP100_IMAGES, OFFICIAL_PAIR_LISTS)

    def __init__(self, root: Path, *, domain: str, pairs: str | None = None, **options: Any):
        super().__init__(root, **options)
        self.domain = check_domain(domain)
        if pairs is not None and pairs not in KINDS:
            raise ConfigError(f"MP-100 option pairs={pairs!r} is not one of {', '.join(KINDS)} (or None: as installed)")
        self.wanted_kind = pairs

    @functools.cached_property
    def folders(self) -> Folders:
        """corrbench's ``MP-100/`` or MARCO's ``mp100_all/`` (see ``layout.locate_mp100``). Decided once per
        adapter: the pair loop reads these paths four times per pair, and each decision globs two folders."""
        return locate_mp100(self.data_root)

    @property
    def annotations_dir(self) -> Path:
        return self.folders.annotations

    @property
    def images_dir(self) -> Path:
        return self.folders.images

    @property
    def list_path(self) -> Path:
        return self.folders.pairs / self.domain.list_file

    def installed_kind(self) -> str | None:
        """"official", "rebuilt", "unrecorded" (a list no manifest describes), or None when there is none."""
        return list_kind(self.folders.pairs, self.domain.key)

    def _accepts(self, kind: str | None) -> bool:
        return kind is not None and (self.wanted_kind is None or kind == self.wanted_kind)

    def is_available(self) -> bool:
        return (
            bool(annotation_test_files(self.annotations_dir))
            and self.images_dir.is_dir()
            and self._accepts(self.installed_kind())
        )

    def prepare(self, progress: bool = True, download: bool = True) -> None:
        """Install MARCO's lists when none are installed (from an earlier download, or downloading them);
        refuse lists of the other kind instead of overwriting them.

        Installing the release is the one call this reader makes into the writers' code
        (``release.install_official_lists``, what ``corrbench build-mp100 --official`` runs): it is a checked
        download, so a first ``corrbench run`` of an mp100-* benchmark gets the paper's pairs as any other
        benchmark gets its data. Rebuilt lists are never made here: they need ``corrbench build-mp100``."""
        if self.is_available():
            return
        kind = self.installed_kind()
        if kind is not None and not self._accepts(kind):
            raise DataError(
                f"{self.list_path} is a {kind} list, but this benchmark reads {self.wanted_kind} lists",
                hint="`corrbench build-mp100 --official` installs MARCO's lists"
                if self.wanted_kind == "official"
                else "`corrbench build-mp100` rebuilds the lists from the annotations",
            )
        if kind is None and self.wanted_kind == "rebuilt":
            raise DataError(f"no rebuilt MP-100 pair lists at {self.list_path.parent}",
                            hint="run `corrbench build-mp100` to rebuild them from the annotations")  # fmt: skip
        have_lists = OFFICIAL_PAIR_LISTS.is_present(self.data_root) or (download and OFFICIAL_PAIR_LISTS.automatic)
        if kind is None and annotation_test_files(self.annotations_dir) and have_lists:
            install_official_lists(self.data_root, annotations_root=self.annotations_dir,
                                   images_root=self.images_dir, progress=progress)  # fmt: skip
        super().prepare(progress=progress, download=download)

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        if split != "test":
            raise ConfigError(f"MP-100 has only the 'test' split, got {split!r}")
        kind = self.installed_kind()
        if not self._accepts(kind):
            raise DataError(
                f"no {self.wanted_kind or 'installed'} MP-100 pair list at {self.list_path}",
                hint="run `corrbench build-mp100 --official` (or without --official to rebuild)",
            )
        items = decode_pair_list(self.list_path.read_bytes(), str(self.list_path))
        index = load_annotations(self.annotations_dir)
        check_category_names(index)
        wanted = None if subset is None else {c.strip() for c in subset.split(",") if c.strip()}
        result = PairSet(pairs=[], notes=self.folders.notes())
        seen: set[str] = set()
        for position, item in enumerate(items):
            entry = parse_entry(item, self.domain.key)
            if not isinstance(entry, PairEntry):
                reason, detail = entry
                self.skip(result.skipped, f"{self.list_path.name}[{position}]", reason, self.list_path, detail)
                continue
            if wanted is not None and CATEGORY_BY_ID[entry.category_id].name not in wanted:
                continue
            pair_id = f"{kind}:{entry.episode_idx:04d}:{entry.src_file}:{entry.trg_file}"
            if pair_id in seen:
                self.skip(result.skipped, pair_id, "duplicate pair", self.list_path, f"entry {position} repeats a pair")
                continue
            seen.add(pair_id)
            pair = self._pair(pair_id, entry, kind, index, result.skipped)
            if pair is not None:
                result.add(pair, *(self.annotations_dir / index.images[rel].annotation_file
                                   for rel in (entry.src_file, entry.trg_file)))
        return result

    def missing_image_hint(self, image: Path) -> str:
        folder = image.relative_to(self.images_dir).parts[0] if image.is_relative_to(self.images_dir) else ""
        category = next((c for c in CATEGORIES if c.folder == folder), None)
        source = f"{folder}/ images come from {category.source}; " if category else ""
        return f"{source}`corrbench build-mp100` lists what is missing and where to get it"

    def _instance(self, rel: str, entry: PairEntry, pair_id: str, index: AnnotationIndex,
                  skipped: list[SkippedPair]) -> Instance | None:  # fmt: skip
        instance = index.instance(rel, entry.category_id) if rel in index.images else None
        if instance is None:
            category = CATEGORY_BY_ID[entry.category_id]
            detail = f"{rel} has no usable {category.name!r} (id {category.id}) annotation in {', '.join(index.files)}"
            problems = index.problems.get(rel, [])
            if problems:  # there is one, but it was left out as malformed: say why
                detail = f"{detail}: {'; '.join(problems)}"
                self.skip(skipped, pair_id, "malformed annotation", self.annotations_dir, detail)
            else:
                self.skip(skipped, pair_id, "missing annotation", self.annotations_dir, detail)
        return instance

    def _pair(self, pair_id: str, entry: PairEntry, kind: str, index: AnnotationIndex,
              skipped: list[SkippedPair]) -> Pair | None:  # fmt: skip
        src = self._instance(entry.src_file, entry, pair_id, index, skipped)
        if src is None:
            return None
        trg = self._instance(entry.trg_file, entry, pair_id, index, skipped)
        if trg is None:
            return None
        if len(src.xy) != len(trg.xy):
            detail = f"{entry.src_file} has {len(src.xy)} keypoints but {entry.trg_file} has {len(trg.xy)}"
            self.skip(skipped, pair_id, "malformed annotation", self.annotations_dir, detail)
            return None
        category = CATEGORY_BY_ID[entry.category_id]
        names = index.categories.get(entry.category_id, {}).get("keypoints") or []
        kp_ids = tuple(names) if len(names) == len(src.xy) else tuple(str(k) for k in range(len(src.xy)))
        src_record, trg_record = index.images[entry.src_file], index.images[entry.trg_file]
        return Pair(
            pair_id=pair_id,
            category=category.name,
            src_image=self.images_dir / entry.src_file,
            trg_image=self.images_dir / entry.trg_file,
            src_size=(src_record.width, src_record.height),
            trg_size=(trg_record.width, trg_record.height),
            src_kps=_points(src),
            trg_kps=_points(trg),
            src_visible=np.array(src.visible, dtype=bool),
            trg_visible=np.array(trg.visible, dtype=bool),
            src_bbox=_corners(src),
            trg_bbox=_corners(trg),
            kp_ids=kp_ids,
            meta={"pair_list": kind, "domain": self.domain.key, "episode_idx": entry.episode_idx,
                  "category_id": entry.category_id},  # fmt: skip
        )


def _points(instance: Instance) -> np.ndarray:
    """(K, 2) pixel coordinates; NaN where the keypoint is not visible (COCO stores 0, 0 there)."""
    xy = np.array(instance.xy, dtype=np.float64).reshape(-1, 2)
    xy[~np.array(instance.visible, dtype=bool)] = np.nan
    return xy


def _corners(instance: Instance) -> np.ndarray:
    x, y, w, h = instance.bbox
    return np.array([x, y, x + w, y + h], dtype=np.float64)
