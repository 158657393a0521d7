"""PF-PASCAL (Ham et al., Proposal Flow, TPAMI 2018) with the SCNet train/val/test pair split.

On disk (``<data root>/pf-pascal/``, MARCO's and the unified benchmark's arrangement)::

    PF-dataset-PASCAL/JPEGImages/<img>.jpg
    PF-dataset-PASCAL/Annotations/<class>/<img>.mat     kps: K x 2 (x, y), a NaN row = keypoint not visible;
                                                         bbox: 1 x 4 [x1, y1, x2, y2]
    {trn,val,test}_pairs.csv                             a pair list (either convention below)

A pair keeps the keypoint rows finite in both images' ``kps`` (row i is the same part in both, since the
annotation of a class has one row per keypoint type); ``kp_ids`` are those row indices. There are no object
masks; image sizes are read from the image headers (the annotations hold none). 299 test / 308 val pairs.

Pair lists: two conventions are in use; which one a file follows is detected from its header row, logged, and
returned with the pairs (``PairSet.notes["pair_list_format"]``, copied into the result):

``sd4match``      ``source_image, target_image, class[, flip]`` (``{trn,val,test}_pairs.csv`` of SD4Match's
                  ``pf-pascal_image_pairs.zip``; read by MARCO and the unified benchmark). ``class`` is the
                  1-based index into the 20 VOC classes; ``flip`` (training split only) asks for both images of
                  the pair to be mirrored: it is kept in ``Pair.meta["flip"]``, applying it is the trainer's job.
                  Keypoints and boxes come from the ``.mat`` annotations.
``cnngeometric``  ``source_image, target_image, class, XA, YA, XB, YB`` (``{split}_pairs_pf_pascal.csv`` of
                  CNNGeometric / WeakAlign, read by GeoAware-SC and sd-dino; recognised by its ``XA``..``YB``
                  columns, its first three columns read by position as those loaders do): the keypoints are in
                  the file, each coordinate list a ``;``-separated string (``XA`` = source x's, ...), only the
                  keypoints visible in both images; no ``.mat`` is read (GeoAware-SC reads them only for
                  training), so these pairs have no box.

Image names in both are paths like ``PF-dataset-PASCAL/JPEGImages/2009_002431.jpg``; like every reference
loader, only the file name is used.

PCK-dagger candidates are the keypoints visible in both images (the rows a pair keeps), as in Jamais Vu's
PCK-dagger; both conventions then give the same pairs, keypoints and scores.

Coordinates: the ``.mat`` files come from MATLAB tooling and may well be 1-based (the centre of the top-left
pixel would be (1, 1); not verifiable without the original annotation tool), but every reference loader (hpf, MARCO, GeoAware-SC, the unified benchmark) uses the
values as they are, so published numbers were computed with them as they are: corrbench does the same and
does not shift them (which would move predictions and ground truth apart by one pixel). The unified benchmark
additionally floors them; ``floor_keypoints=True`` reproduces that.

Threshold: ``img``, the larger side of the target image.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, DataError
from ..geometry import Size
from ..types import Pair
from .base import DatasetAdapter, PairSet, SkippedPair
from .download import DatasetSource
from .spair import VOC_CLASSES

log = logging.getLogger(__name__)

PF_PASCAL_CLASSES = VOC_CLASSES  # the pair lists' 1-based ``class`` indexes this tuple
SPLITS = ("trn", "val", "test")
IMAGES_DIR = Path("PF-dataset-PASCAL") / "JPEGImages"
ANNOTATIONS_DIR = Path("PF-dataset-PASCAL") / "Annotations"
PAIR_LISTS_DIR = "pf-pascal_image_pairs"  # the SD4Match zip's top folder

PF_PASCAL_IMAGES_SOURCE = DatasetSource(
    name="PF-PASCAL images and annotations (Proposal Flow)",
    url="https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip",
    filename="PF-dataset-PASCAL.zip",
    provides=f"pf-pascal/{IMAGES_DIR.as_posix()}",
    kind="archive",
    destination="pf-pascal",
)
PF_PASCAL_PAIRS_SOURCE = DatasetSource(
    name="PF-PASCAL pair lists (SD4Match)",
    url="https://www.robots.ox.ac.uk/~xinghui/sd4match/pf-pascal_image_pairs.zip",
    filename="pf-pascal_image_pairs.zip",
    provides=f"pf-pascal/{PAIR_LISTS_DIR}/test_pairs.csv",
    kind="archive",
    destination="pf-pascal",
)

SD4MATCH, CNNGEOMETRIC = "sd4match", "cnngeometric"
_SD4MATCH_COLUMNS = ("source_image", "target_image", "class")
_CNNGEOMETRIC_COLUMNS = ("xa", "ya", "xb", "yb")


# Helpers shared with PF-WILLOW ------------------------------------------------------------------------------
def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the ``(line number, cells)`` of every non-empty data row of a pair list."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(_numbered(csv.reader(handle)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the pair list {path}: {exc}", hint="re-download it") from None
    if not rows:
        raise DataError(f"the pair list {path} is empty", hint="re-download it")
    header = [cell.strip() for cell in rows[0][1]]
    return header, rows[1:]


def _numbered(reader):
    for cells in reader:
        if any(cell.strip() for cell in cells):
            yield reader.line_num, cells


def image_size(adapter: DatasetAdapter, path: Path, skipped: list[SkippedPair], name: str,
               context: str, cache: dict[Path, Any]) -> Size | None:
    """``(W, H)`` from the image header, or None with a skip record for pair ``name``. ``cache`` keeps each
    file's size or failure, so an image shared by many pairs is opened once and every such pair is reported."""
    if path not in cache:
        try:
            with Image.open(path) as image:
                cache[path] = image.size
        except FileNotFoundError:
            cache[path] = None
        except (UnidentifiedImageError, OSError) as exc:
            cache[path] = _ImageFailure("unreadable image", f": {exc}")
    found = cache[path]
    if found is None:  # the header is read before the pair exists, so the missing file is reported here
        adapter.skip_missing_image(skipped, name, path, context)
        return None
    if isinstance(found, _ImageFailure):
        adapter.skip(skipped, name, found.reason, path, context + found.detail)
        return None
    return found


@dataclass(frozen=True)
class _ImageFailure:
    reason: str
    detail: str


def subset_categories(subset: str | None) -> set[str] | None:
    """``subset`` is None (all pairs) or a comma-separated list of categories."""
    return None if subset is None else {c.strip() for c in subset.split(",") if c.strip()}


def kp_box(kps: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2]`` of the box spanned by the points."""
    return np.concatenate([kps.min(axis=0), kps.max(axis=0)])


# The adapter ------------------------------------------------------------------------------------------------
class PFPascal(DatasetAdapter):
    """PF-PASCAL reader. ``root`` is ``<data root>/pf-pascal``.

    Options: ``pair_list`` (a pair-list path relative to ``root``, ``{split}`` is replaced; default: the first
    of ``{split}_pairs.csv``, ``pf-pascal_image_pairs/{split}_pairs.csv``,
    ``PF-dataset-PASCAL/{split}_pairs_pf_pascal.csv``, ``{split}_pairs_pf_pascal.csv`` that exists; for
    ``trn`` also ``train_...``), ``floor_keypoints`` (the unified benchmark's flooring).
    """

    name = "PF-PASCAL"
    instructions = (
        "put PF-PASCAL under <data root>/pf-pascal: extract "
        f"{PF_PASCAL_IMAGES_SOURCE.url} there (-> pf-pascal/PF-dataset-PASCAL/JPEGImages) and the pair lists "
        f"{PF_PASCAL_PAIRS_SOURCE.url} (-> pf-pascal/{PAIR_LISTS_DIR}/test_pairs.csv, or move the CSVs up into "
        "pf-pascal/ as MARCO does); CNNGeometric's test_pairs_pf_pascal.csv in pf-pascal/PF-dataset-PASCAL/ "
        "works too"
    )
    sources = (PF_PASCAL_IMAGES_SOURCE, PF_PASCAL_PAIRS_SOURCE)

    def __init__(self, root: Path, *, pair_list: str | None = None, floor_keypoints: bool = False, **options: Any):
        super().__init__(root, **options)
        self.pair_list = pair_list
        self.floor_keypoints = bool(floor_keypoints)
        self._sizes: dict[Path, Any] = {}

    def pair_list_candidates(self, split: str) -> list[Path]:
        if self.pair_list is not None:
            return [self.root / self.pair_list.format(split=split)]
        names = [split] + (["train"] if split == "trn" else [])
        paths = []
        for name in names:
            paths += [
                self.root / f"{name}_pairs.csv",
                self.root / PAIR_LISTS_DIR / f"{name}_pairs.csv",
                self.root / "PF-dataset-PASCAL" / f"{name}_pairs_pf_pascal.csv",
                self.root / f"{name}_pairs_pf_pascal.csv",
            ]
        return paths

    def find_pair_list(self, split: str) -> Path | None:
        return next((p for p in self.pair_list_candidates(split) if p.is_file()), None)

    def is_available(self) -> bool:
        return (self.root / IMAGES_DIR).is_dir() and self.find_pair_list("test") is not None

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        if split not in SPLITS:
            raise ConfigError(f"unknown PF-PASCAL split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        path = self.find_pair_list(split)
        if path is None:
            tried = ", ".join(str(p) for p in self.pair_list_candidates(split))
            raise DataError(f"no PF-PASCAL pair list for split {split!r}",
                            hint=f"looked for {tried}. {self.instructions}")
        header, rows = read_csv(path)
        fmt, columns = detect_pair_list_format(header, path)
        log.info("PF-PASCAL: %s pair list %s (%s convention)", split, path, fmt)
        categories = subset_categories(subset)
        result = PairSet(pairs=[], notes={"pair_list": str(path), "pair_list_format": fmt})
        for index, (line, cells) in enumerate(rows, start=1):
            read = self._read_row(path, line, index, cells, header, fmt, columns, categories, result.skipped)
            if read is not None:
                result.add(*read)
        return result

    def _read_row(self, path: Path, line: int, index: int, cells: list[str], header: list[str], fmt: str,
                  columns: dict[str, int], categories: set[str] | None,
                  skipped: list[SkippedPair]) -> tuple[Pair, Path, Path] | None:
        """The pair of one row and the files its source and target keypoints come from, or None (skipped)."""
        name = f"{path.name}:{line}"

        def bad(detail: str) -> None:
            self.skip(skipped, name, "malformed pair row", path, f"line {line}: {detail}")

        if len(cells) != len(header):
            return bad(f"{len(cells)} columns, but the header has {len(header)}")
        src_name = PurePosixPath(cells[columns["source_image"]].strip()).name
        trg_name = PurePosixPath(cells[columns["target_image"]].strip()).name
        class_text = cells[columns["class"]].strip()
        try:
            class_value = float(class_text)  # CNNGeometric's lists may write 1.0
        except ValueError:
            class_value = math.nan
        if not (class_value.is_integer() and 1 <= class_value <= len(PF_PASCAL_CLASSES)):
            return bad(f"class {class_text!r} is not a 1-based index of the 20 VOC classes")
        class_index = int(class_value)
        category = PF_PASCAL_CLASSES[class_index - 1]
        if categories is not None and category not in categories:
            return None
        meta: dict[str, Any] = {}
        if "flip" in columns:
            flip = cells[columns["flip"]].strip()
            if flip not in ("0", "1", "0.0", "1.0"):
                return bad(f"flip {flip!r} is not 0 or 1")
            meta["flip"] = int(float(flip))
        pair_id = f"{index:06d}-{Path(src_name).stem}-{Path(trg_name).stem}:{category}"

        if fmt == SD4MATCH:
            annotation = self._keypoints_from_mat(pair_id, category, src_name, trg_name, skipped)
            src_file, trg_file = (self._mat_path(category, name) for name in (src_name, trg_name))
        else:
            annotation = _keypoints_from_row(cells, columns, bad)
            src_file = trg_file = path
        if annotation is None:
            return None
        src_kps, trg_kps, kp_ids, src_box, trg_box = annotation
        if len(src_kps) == 0:
            self.skip(skipped, pair_id, "too few keypoints", path,
                      f"line {line}: no keypoint is visible in both images")
            return None
        if self.floor_keypoints:
            src_kps, trg_kps = np.floor(src_kps), np.floor(trg_kps)

        images = self.root / IMAGES_DIR
        context = f"named on line {line} of {path}"
        src_size = image_size(self, images / src_name, skipped, pair_id, context, self._sizes)
        trg_size = image_size(self, images / trg_name, skipped, pair_id, context, self._sizes) if src_size else None
        if src_size is None or trg_size is None:
            return None
        visible = np.ones(len(src_kps), dtype=bool)
        pair = Pair(
            pair_id=pair_id,
            category=category,
            src_image=images / src_name,
            trg_image=images / trg_name,
            src_size=src_size,
            trg_size=trg_size,
            src_kps=src_kps,
            trg_kps=trg_kps,
            src_visible=visible,
            trg_visible=visible.copy(),
            src_bbox=src_box,
            trg_bbox=trg_box,
            kp_ids=kp_ids,
            meta=meta,
        )
        return pair, src_file, trg_file

    def _mat_path(self, category: str, image_name: str) -> Path:
        return self.root / ANNOTATIONS_DIR / category / f"{Path(image_name).stem}.mat"

    def _keypoints_from_mat(self, pair_id: str, category: str, src_name: str, trg_name: str,
                            skipped: list[SkippedPair]):
        src_path, trg_path = self._mat_path(category, src_name), self._mat_path(category, trg_name)
        src = self._read_mat(src_path, pair_id, skipped)
        trg = self._read_mat(trg_path, pair_id, skipped) if src is not None else None
        if src is None or trg is None:
            return None
        (src_all, src_box), (trg_all, trg_box) = src, trg
        if len(src_all) != len(trg_all):
            self.skip(skipped, pair_id, "malformed annotation", trg_path,
                      f"kps has {len(trg_all)} rows but {src_path} has {len(src_all)}: rows must be the same "
                      "keypoint types in both images of a class")
            return None
        rows = np.flatnonzero(np.isfinite(src_all).all(axis=1) & np.isfinite(trg_all).all(axis=1))
        return src_all[rows], trg_all[rows], tuple(str(r) for r in rows), src_box, trg_box

    def _read_mat(self, path: Path, pair_id: str, skipped: list[SkippedPair]):
        """``(kps (K, 2), bbox (4,) or None)`` of one annotation, or None with a skip record."""
        from scipy.io import loadmat  # scipy loads only when PF-PASCAL is read

        if not path.is_file():
            self.skip(skipped, pair_id, "missing annotation", path)
            return None
        try:
            data = loadmat(path)
        except Exception as exc:  # scipy raises ValueError, TypeError, OSError, MatReadError... on a bad file
            self.skip(skipped, pair_id, "malformed annotation", path,
                      f"unreadable .mat file ({type(exc).__name__}: {exc})")
            return None
        if "kps" not in data:
            self.skip(skipped, pair_id, "malformed annotation", path, "no 'kps' variable")
            return None
        kps = np.asarray(data["kps"], dtype=np.float64)
        if kps.size == 0:
            kps = kps.reshape(0, 2)
        if kps.ndim != 2 or kps.shape[1] != 2:
            self.skip(skipped, pair_id, "malformed annotation", path, f"'kps' must be K x 2, found {kps.shape}")
            return None
        box = None
        if "bbox" in data:
            box = np.asarray(data["bbox"], dtype=np.float64).reshape(-1)
            if box.shape != (4,) or not np.isfinite(box).all():
                self.skip(skipped, pair_id, "malformed annotation", path,
                          f"'bbox' must be 4 finite numbers, found {box}")
                return None
        return kps, box


def detect_pair_list_format(header: Sequence[str], path: Path) -> tuple[str, dict[str, int]]:
    """``(convention, column index by name)`` of a PF-PASCAL pair list, from its header row.

    SD4Match's lists are read by column name, as the unified benchmark does. CNNGeometric's are recognised by
    their ``XA, YA, XB, YB`` columns; their first three columns are taken by position (source image, target
    image, class), as WeakAlign and GeoAware-SC read them, whatever those columns are called.
    """
    lowered = [h.strip().lower() for h in header]
    index = {name: i for i, name in enumerate(lowered)}
    if all(c in index for c in _CNNGEOMETRIC_COLUMNS) and len(header) >= 7:
        return CNNGEOMETRIC, {**index, "source_image": 0, "target_image": 1, "class": 2}
    if all(c in index for c in _SD4MATCH_COLUMNS):
        return SD4MATCH, index
    raise DataError(
        f"{path}: unknown PF-PASCAL pair-list header {list(header)}",
        hint="expected SD4Match's 'source_image,target_image,class[,flip]' or CNNGeometric's "
             "'source_image,target_image,class,XA,YA,XB,YB'",
    )


def _keypoints_from_row(cells: list[str], columns: dict[str, int], bad):
    """CNNGeometric rows: ``XA, YA, XB, YB`` as ``;``-separated coordinate lists."""
    coords = {}
    for name in _CNNGEOMETRIC_COLUMNS:
        text = cells[columns[name]].strip()
        try:
            coords[name] = np.array([float(v) for v in text.split(";") if v.strip()], dtype=np.float64)
        except ValueError:
            return bad(f"{name.upper()} {text!r} is not a ';'-separated list of numbers")
    lengths = {name.upper(): len(v) for name, v in coords.items()}
    if len(set(lengths.values())) != 1:
        return bad(f"keypoint count mismatch: {lengths}")
    src = np.stack([coords["xa"], coords["ya"]], axis=1)
    trg = np.stack([coords["xb"], coords["yb"]], axis=1)
    return src, trg, tuple(str(i) for i in range(len(src))), None, None


__all__ = ["PFPascal", "PF_PASCAL_CLASSES", "detect_pair_list_format"]
