"""SPair-71k's on-disk layout (Min et al. 2019), also written by the synthetic benchmark.

    JPEGImages/<cat>/<img>.jpg
    PairAnnotation/<split>/<pairid>-<src>-<trg>:<cat>.json    (pair_dir option, e.g. ExtraPairAnnotation)
    Layout/<large|small>/<split>.txt                           one pair stem per line
    Segmentation/<cat>/<img>.png                               object labels (see below)

Pair files list only keypoints visible in both images, row-aligned (``src_kps[i]`` <-> ``trg_kps[i]``).
Sizes in the files are ``[W, H, C]``, boxes ``[x1, y1, x2, y2]``. The official release is
``SPair-71k.tar.gz`` (top folder ``SPair-71k/``); ``Layout/large`` lists 53,340 trn / 5,384 val / 12,234 test
pairs. Every split can be read (``trn`` and ``val`` for training and model selection).

What a ``Pair`` carries beyond the keypoints:

- ``meta``: the pair's variation levels (``mirror``, ``viewpoint_variation``, ``scale_variation``,
  ``truncation``, ``occlusion``; small ints, for breakdown tables) and, for SPair's categories,
  ``mask_label``: the pixel value of this category in ``Segmentation/`` (SPair writes the PASCAL VOC class
  index + 1, in the 20-class VOC order that includes diningtable and sofa; MARCO keeps only that value).
- ``src_mask`` / ``trg_mask``: the segmentation file, when it exists (used for training, not for scoring).

The official files always carry ``src_bndbox`` / ``trg_bndbox`` (MARCO and Jamais Vu read them
unconditionally), so a pair file without them is malformed: the SPair benchmarks score against the box.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..files import UnreadableJSON, read_json
from ..types import Pair
from .base import DatasetAdapter, PairSet, SkippedPair
from .download import DatasetSource

SPAIR_CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor",
)  # fmt: skip
# The 20 PASCAL VOC classes in VOC order: SPair's Segmentation PNGs store (index in this tuple) + 1.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
SPLITS = ("trn", "val", "test")
_REQUIRED = (
    "src_imname", "trg_imname", "src_imsize", "trg_imsize", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox",
    "category",
)  # fmt: skip
_VARIATION_FIELDS = ("mirror", "viewpoint_variation", "scale_variation", "truncation", "occlusion")

SPAIR71K_URL = "https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz"
SPAIR71K_SOURCE = DatasetSource(
    name="SPair-71k images and annotations",
    url=SPAIR71K_URL,
    filename="SPair-71k.tar.gz",
    provides="SPair-71k/Layout/large/test.txt",
    kind="archive",
    destination="",  # the archive's top folder is SPair-71k/
)


class SPairLayout(DatasetAdapter):
    """Reader of SPair-71k-layout pair files.

    Options: ``pair_dir`` (default ``PairAnnotation``), ``layout`` (``large`` or ``small``),
    ``missing_pair_files`` (``skip`` reports a layout stem without a pair file as skipped; ``ignore`` drops it
    silently, for annotation sets that cover only some stems, like SPair-U's extra keypoints). A pair whose
    image is missing is skipped by the base adapter, like every dataset's.

    Subclasses that read another dataset in this layout (the synthetic benchmark, SPair-U) point the folder
    hooks (``pair_folder``, ``images_dir``, ``masks_dir``, ``layout_file``) elsewhere; they do not inherit
    SPair-71k's download sources and segmentation label values unless they declare them
    (see ``__init_subclass__``).
    """

    name = "SPair-71k"
    instructions = (
        f"download {SPAIR71K_URL} and extract it so that <data root>/SPair-71k/Layout/large/test.txt exists"
    )
    sources = (SPAIR71K_SOURCE,)
    #: category -> its pixel value in Segmentation/ (recorded as ``meta["mask_label"]``).
    segmentation_labels: dict[str, int] = {name: i + 1 for i, name in enumerate(VOC_CLASSES)}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Facts about SPair-71k's release are not inherited: a subclass reads other data (the synthetic
        # benchmark generates its own, with its own label values), and fetching SPair-71k for it would be a
        # silent multi-GB surprise. Each subclass declares what holds for its data.
        super().__init_subclass__(**kwargs)
        if "sources" not in cls.__dict__:
            cls.sources = ()
        if "segmentation_labels" not in cls.__dict__:
            cls.segmentation_labels = {}

    def __init__(self, root: Path, *, pair_dir: str = "PairAnnotation", layout: str = "large",
                 missing_pair_files: str = "skip", **options: Any):
        super().__init__(root, **options)
        if missing_pair_files not in ("skip", "ignore"):
            raise ConfigError(f"missing_pair_files must be 'skip' or 'ignore', got {missing_pair_files!r}")
        if layout not in ("large", "small"):
            raise ConfigError(f"SPair layout must be 'large' or 'small', got {layout!r}")
        self.pair_dir, self.layout, self.missing_pair_files = pair_dir, layout, missing_pair_files

    # Folder hooks: where the parts of the layout live (subclasses move them).
    def layout_file(self, split: str) -> Path:
        return self.root / "Layout" / self.layout / f"{split}.txt"

    def pair_folder(self, split: str) -> Path:
        return self.root / self.pair_dir / split

    @property
    def images_dir(self) -> Path:
        return self.root / "JPEGImages"

    @property
    def masks_dir(self) -> Path:
        return self.root / "Segmentation"

    def is_available(self) -> bool:
        return self.layout_file("test").is_file() and (self.root / self.pair_dir).is_dir()

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown {self.name} split {split!r}", hint=f"use one of {', '.join(SPLITS)}")

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        self.check_split(split)
        layout_file = self.layout_file(split)
        try:
            stems = [line.strip() for line in layout_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read the {self.name} pair list {layout_file}: {exc}",
                            hint=self.instructions or "check the dataset is complete under the data root") from None
        categories = self._subset_categories(subset)
        result = PairSet(pairs=[])
        folder = self.pair_folder(split)
        for stem in stems:
            category = stem.rpartition(":")[2]
            if categories is not None and category not in categories:
                continue
            path = folder / f"{stem}.json"
            if not path.is_file():
                if self.missing_pair_files == "skip":
                    self.skip(result.skipped, stem, "missing pair file", path, f"listed in {layout_file}")
                continue
            pair = self._read_pair(path, stem, result.skipped)
            if pair is not None:
                result.add(pair, path)
        return result

    @staticmethod
    def _subset_categories(subset: str | None) -> set[str] | None:
        """``subset`` is None (all pairs) or a comma-separated list of categories."""
        return None if subset is None else {c.strip() for c in subset.split(",") if c.strip()}

    def _read_pair(self, path: Path, stem: str, skipped: list[SkippedPair]) -> Pair | None:
        data = self.load_pair_json(path, stem, skipped)
        if data is None:
            return None
        src_kps, trg_kps = data["src_kps"], data["trg_kps"]
        category = data["category"]
        src_image = self.images_dir / category / data["src_imname"]
        trg_image = self.images_dir / category / data["trg_imname"]
        visible = np.ones(len(src_kps), dtype=bool)  # pair files list mutually visible keypoints only
        src_mask = self.masks_dir / category / f"{Path(data['src_imname']).stem}.png"
        trg_mask = self.masks_dir / category / f"{Path(data['trg_imname']).stem}.png"
        meta = {key: data[key] for key in _VARIATION_FIELDS if key in data}
        if category in self.segmentation_labels:
            meta["mask_label"] = self.segmentation_labels[category]
        return Pair(
            pair_id=stem,
            category=category,
            src_image=src_image,
            trg_image=trg_image,
            src_size=data["src_imsize"],
            trg_size=data["trg_imsize"],
            src_kps=src_kps,
            trg_kps=trg_kps,
            src_visible=visible,
            trg_visible=visible.copy(),
            src_bbox=data["src_bndbox"],
            trg_bbox=data["trg_bndbox"],
            kp_ids=tuple(data["kps_ids"]),
            src_mask=src_mask if self.file_exists(src_mask) else None,
            trg_mask=trg_mask if self.file_exists(trg_mask) else None,
            meta=meta,
        )

    def load_pair_json(self, path: Path, stem: str, skipped: list[SkippedPair]) -> dict[str, Any] | None:
        """One SPair pair file, checked and converted (keypoints ``(N, 2)`` float arrays, sizes ``(W, H)``,
        boxes ``(4,)`` arrays, ``kps_ids`` strings); None (and a skip record) when it is malformed."""

        def bad(detail: str) -> None:
            self.skip(skipped, stem, "malformed pair file", path, detail)

        try:
            data = read_json(path)
        except UnreadableJSON as exc:
            return bad(f"not valid JSON ({exc})")
        if not isinstance(data, dict):
            return bad(f"expected a JSON object, found {type(data).__name__}")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            return bad(f"missing field(s) {', '.join(missing)}")
        try:
            src_kps = np.asarray(data["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(data["trg_kps"], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as exc:
            return bad(f"src_kps/trg_kps are not lists of [x, y] ({exc})")
        if src_kps.shape != trg_kps.shape:
            return bad(f"src_kps has {len(src_kps)} points but trg_kps has {len(trg_kps)}")
        kp_ids = [str(k) for k in data.get("kps_ids", range(len(src_kps)))]
        if len(kp_ids) != len(src_kps):
            return bad(f"kps_ids has {len(kp_ids)} entries for {len(src_kps)} keypoints")
        try:
            sizes = {side: (int(data[f"{side}_imsize"][0]), int(data[f"{side}_imsize"][1])) for side in ("src", "trg")}
        except (TypeError, ValueError, IndexError) as exc:
            return bad(f"src_imsize/trg_imsize are not [W, H, C] ({exc})")
        try:
            boxes = {side: np.asarray(data[f"{side}_bndbox"], dtype=np.float64).reshape(4) for side in ("src", "trg")}
        except (TypeError, ValueError) as exc:
            return bad(f"src_bndbox/trg_bndbox are not [x1, y1, x2, y2] ({exc})")
        return {
            **data,
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "kps_ids": kp_ids,
            "src_imsize": sizes["src"],
            "trg_imsize": sizes["trg"],
            "src_bndbox": boxes["src"],
            "trg_bndbox": boxes["trg"],
        }
