"""PF-WILLOW (Ham et al., Proposal Flow, CVPR 2016): 900 test pairs, 10 keypoints per image, no training split.

On disk (``<data root>/pf-willow/``, the unified benchmark's arrangement)::

    PF-dataset/<class>/<img>.png      10 class folders: car(G) car(M) car(S) duck(S) motorbike(G) motorbike(M)
                                      motorbike(S) winebottle(M) winebottle(wC) winebottle(woC)
    test_pairs.csv                    SD4Match's copy of the CNNGeometric pair list

The pair list is found where each codebase puts it (``PAIR_LISTS``, first found; the ``pair_list`` option
names another): ``test_pairs.csv`` (SD4Match, what ``corrbench download`` fetches), CNNGeometric's own file
``test_pairs_pf.csv`` beside ``PF-dataset/`` (where CNNGeometric's and WeakAlign's eval scripts read it) or
inside ``PF-dataset/`` (where CNNGeometric's ``download_datasets.py`` saves it; GLU-Net reads it there). All
three hold the same columns, and their image paths are relative to the folder that holds ``PF-dataset/``.
Which file was read is returned with the pairs (``PairSet.notes``, copied into the result).

``test_pairs.csv``: a header, then one pair per row: ``imageA, imageB`` (paths such as
``PF-dataset/car(G)/<img>.png``), 20 source values (10 x's, then 10 y's) and 20 target values (10 x's, then 10
y's); 42 columns, read by position as hpf, DHPF, CATs, CHM and the unified benchmark do. All 10 keypoints are
visible in both images. The category is the class folder (10 categories, as in those codebases). Like them, the
first path component is replaced by ``PF-dataset``. Coordinates are used as they are (no 0/1-based shift, see
``pf_pascal``); ``floor_keypoints=True`` reproduces the unified benchmark's flooring.

The two thresholds papers print for PF-WILLOW (the unified benchmark's Tables II-IV have both columns):

``bbox-kp``  T = the larger side of the box spanned by the 10 target keypoints (NC-Net, CNNGeometric,
             WeakAlign, CATs' ``--thres bbox-kp``, the unified benchmark paper's definition; hpf's ``bbox`` and
             the unified benchmark code's ``bbox`` compute the same tight box, which is why HPF's numbers are
             the same in both of the unified benchmark's columns). corrbench's ``pf-willow``.
``bbox``     in DHPF, CATs and CHM's code the "bbox" threshold is computed over the keypoints padded with -1
             (-2 in CHM) up to 20 rows, so the box's minimum corner is the padding value, not the keypoints':
             T = max(max x, max y) - pad. PF-WILLOW ships no object boxes, so this padded box is what the
             published "bbox" numbers of that line of work measured (DHPF 77.6 vs 71.0 at 0.1, CHM 79.4 vs 69.6,
             CATs 79.2 vs 69.0; see dhpf issue #3 and CATs issue #6). corrbench's ``pf-willow-bbox`` uses the
             object box ``[min(-1, min x), min(-1, min y), max x, max y]`` (``object_box="padded-keypoints"``,
             the -1 of DHPF and CATs)
             in the original frame; those codes measured in a resized square frame, where the padding corner
             sits at -1 of the resized pixels, so this reproduces them up to ~1 pixel of T.

``object_box`` (``keypoints``, the default, or ``padded-keypoints``) sets ``Pair.src_bbox``/``trg_bbox``;
the ``bbox-kp`` threshold ignores it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..types import Pair
from .base import DatasetAdapter, PairSet, SkippedPair
from .download import DatasetSource
from .pf_pascal import image_size, kp_box, read_csv, subset_categories

PF_WILLOW_CLASSES = (
    "car(G)", "car(M)", "car(S)", "duck(S)", "motorbike(G)", "motorbike(M)", "motorbike(S)",
    "winebottle(M)", "winebottle(wC)", "winebottle(woC)",
)  # fmt: skip
NUM_KEYPOINTS = 10
NUM_COLUMNS = 2 + 4 * NUM_KEYPOINTS
PAD_CORNER = -1.0  # DHPF / CATs pad keypoint lists with -1 (CHM with -2)
OBJECT_BOXES = ("keypoints", "padded-keypoints")
IMAGES_DIR = "PF-dataset"

PF_WILLOW_IMAGES_SOURCE = DatasetSource(
    name="PF-WILLOW images (Proposal Flow)",
    url="https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip",
    filename="PF-dataset.zip",
    provides=f"pf-willow/{IMAGES_DIR}",
    kind="archive",
    destination="pf-willow",
)
# (where, relative to the dataset folder; what puts it there)
PAIR_LISTS = (
    ("test_pairs.csv", "sd4match"),
    ("test_pairs_pf.csv", "cnngeometric"),
    (f"{IMAGES_DIR}/test_pairs_pf.csv", "cnngeometric-download"),
)

PF_WILLOW_PAIRS_SOURCE = DatasetSource(
    name="PF-WILLOW test pairs (SD4Match)",
    url="https://www.robots.ox.ac.uk/~xinghui/sd4match/test_pairs.csv",
    filename="pf-willow_test_pairs.csv",  # its name under .downloads/, where other datasets' test_pairs.csv may be
    provides="pf-willow/test_pairs.csv",
    kind="file",
    destination="pf-willow/test_pairs.csv",
)


class PFWillow(DatasetAdapter):
    """PF-WILLOW reader. ``root`` is ``<data root>/pf-willow``.

    Options: ``object_box`` (``keypoints`` or ``padded-keypoints``, see the module docstring),
    ``pair_list`` (a path relative to ``root``; default: the first of ``PAIR_LISTS`` that exists),
    ``floor_keypoints``.
    """

    name = "PF-WILLOW"
    instructions = (
        f"put PF-WILLOW under <data root>/pf-willow: extract {PF_WILLOW_IMAGES_SOURCE.url} there "
        f"(-> pf-willow/PF-dataset/<class>/*.png) and save {PF_WILLOW_PAIRS_SOURCE.url} as pf-willow/test_pairs.csv "
        "(CNNGeometric's test_pairs_pf.csv in pf-willow/ or pf-willow/PF-dataset/ works too)"
    )
    sources = (PF_WILLOW_IMAGES_SOURCE, PF_WILLOW_PAIRS_SOURCE)

    def __init__(self, root: Path, *, object_box: str = "keypoints", pair_list: str | None = None,
                 floor_keypoints: bool = False, **options: Any):
        super().__init__(root, **options)
        if object_box not in OBJECT_BOXES:
            raise ConfigError(f"PF-WILLOW object_box must be one of {', '.join(OBJECT_BOXES)}, got {object_box!r}")
        self.object_box = object_box
        self.pair_lists = [(self.root / pair_list, "option")] if pair_list else [
            (self.root / where, layout) for where, layout in PAIR_LISTS]
        self.floor_keypoints = bool(floor_keypoints)
        self._sizes: dict[Path, Any] = {}

    def find_pair_list(self) -> tuple[Path, str] | None:
        """The pair list to read and which arrangement put it there, or None."""
        return next(((path, layout) for path, layout in self.pair_lists if path.is_file()), None)

    def is_available(self) -> bool:
        return self.find_pair_list() is not None and (self.root / IMAGES_DIR).is_dir()

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        if split != "test":
            raise ConfigError(f"PF-WILLOW has only a test split, not {split!r}", hint="use split 'test'")
        found = self.find_pair_list()
        if found is None:
            tried = ", ".join(str(path) for path, _ in self.pair_lists)
            raise DataError(f"PF-WILLOW pair list not found (looked for {tried})", hint=self.instructions)
        path, layout = found
        header, rows = read_csv(path)
        if len(header) != NUM_COLUMNS:
            raise DataError(
                f"{path}: the header has {len(header)} columns, a PF-WILLOW pair list has {NUM_COLUMNS} "
                "(imageA, imageB, 10 source x, 10 source y, 10 target x, 10 target y)",
                hint="re-download test_pairs.csv",
            )
        categories = subset_categories(subset)
        result = PairSet(pairs=[], notes={"pair_list": str(path), "pair_list_layout": layout})
        for index, (line, cells) in enumerate(rows, start=1):
            pair = self._read_row(path, line, index, cells, categories, result.skipped)
            if pair is not None:
                result.add(pair, path)
        return result

    def _image_path(self, text: str) -> Path:
        parts = PurePosixPath(text.strip()).parts
        # "PF-dataset/<class>/<img>.png": the first component names the dataset folder, whatever it is called
        return self.root / IMAGES_DIR / Path(*parts[1:]) if len(parts) >= 3 else self.root / IMAGES_DIR / Path(*parts)

    def _read_row(self, path: Path, line: int, index: int, cells: list[str], categories: set[str] | None,
                  skipped: list[SkippedPair]) -> Pair | None:

        def bad(detail: str) -> None:
            self.skip(skipped, f"{path.name}:{line}", "malformed pair row", path, f"line {line}: {detail}")

        if len(cells) != NUM_COLUMNS:
            return bad(f"{len(cells)} columns, a PF-WILLOW row has {NUM_COLUMNS}")
        src_image, trg_image = self._image_path(cells[0]), self._image_path(cells[1])
        if len(PurePosixPath(cells[0].strip()).parts) < 2:
            return bad(f"imageA {cells[0]!r} does not name a class folder")
        category = src_image.parent.name
        if categories is not None and category not in categories:
            return None
        try:
            values = np.array([float(v) for v in cells[2:]], dtype=np.float64)
        except ValueError as exc:
            return bad(f"a keypoint coordinate is not a number ({exc})")
        n = NUM_KEYPOINTS
        src_kps = np.stack([values[0:n], values[n : 2 * n]], axis=1)
        trg_kps = np.stack([values[2 * n : 3 * n], values[3 * n : 4 * n]], axis=1)
        if self.floor_keypoints:
            src_kps, trg_kps = np.floor(src_kps), np.floor(trg_kps)
        pair_id = f"{index:06d}-{src_image.stem}-{trg_image.stem}:{category}"
        context = f"named on line {line} of {path}"
        src_size = image_size(self, src_image, skipped, pair_id, context, self._sizes)
        trg_size = image_size(self, trg_image, skipped, pair_id, context, self._sizes) if src_size else None
        if src_size is None or trg_size is None:
            return None
        visible = np.ones(n, dtype=bool)
        return Pair(
            pair_id=pair_id,
            category=category,
            src_image=src_image,
            trg_image=trg_image,
            src_size=src_size,
            trg_size=trg_size,
            src_kps=src_kps,
            trg_kps=trg_kps,
            src_visible=visible,
            trg_visible=visible.copy(),
            src_bbox=self._box(src_kps),
            trg_bbox=self._box(trg_kps),
            kp_ids=tuple(str(i) for i in range(n)),
        )

    def _box(self, kps: np.ndarray) -> np.ndarray:
        box = kp_box(kps)
        if self.object_box == "padded-keypoints":
            box[:2] = np.minimum(box[:2], PAD_CORNER)  # the minimum over keypoints and padding rows
        return box
