"""SPair-71k's on-disk layout (Min et al. 2019), also written by the synthetic benchmark.

    JPEGImages/<cat>/<img>.jpg
    PairAnnotation/<split>/<pairid>-<src>-<trg>:<cat>.json    (pair_dir option, e.g. ExtraPairAnnotation)
    Layout/<large|small>/<split>.txt                           one pair stem per line
    Segmentation/<cat>/<img>.png                               object labels (non-zero = object)

Pair files list only keypoints visible in both images, row-aligned (``src_kps[i]`` <-> ``trg_kps[i]``).
Sizes in the files are ``[W, H, C]``, boxes ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..types import Pair
from .base import DatasetAdapter, PairSet, SkippedPair

SPAIR_CATEGORIES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "train", "tvmonitor",
)  # fmt: skip
SPLITS = ("trn", "val", "test")
_REQUIRED = ("src_imname", "trg_imname", "src_imsize", "trg_imsize", "src_kps", "trg_kps", "category")
_VARIATION_FIELDS = ("mirror", "viewpoint_variation", "scale_variation", "truncation", "occlusion")


class SPairLayout(DatasetAdapter):
    """Reader of SPair-71k-layout pair files.

    Options: ``pair_dir`` (default ``PairAnnotation``), ``layout`` (``large`` or ``small``),
    ``missing_pair_files`` (``skip`` reports a layout stem without a pair file as skipped; ``ignore`` drops it
    silently, for annotation sets that cover only some stems, like SPair-U's extra keypoints).
    """

    name = "SPair-71k"
    instructions = (
        "download https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz and extract it so that "
        "<data root>/SPair-71k/Layout/large/test.txt exists"
    )

    def __init__(self, root: Path, *, pair_dir: str = "PairAnnotation", layout: str = "large",
                 missing_pair_files: str = "skip", **options: Any):
        super().__init__(root, **options)
        if missing_pair_files not in ("skip", "ignore"):
            raise ConfigError(f"missing_pair_files must be 'skip' or 'ignore', got {missing_pair_files!r}")
        self.pair_dir, self.layout, self.missing_pair_files = pair_dir, layout, missing_pair_files

    def layout_file(self, split: str) -> Path:
        return self.root / "Layout" / self.layout / f"{split}.txt"

    def is_available(self) -> bool:
        return self.layout_file("test").is_file() and (self.root / self.pair_dir).is_dir()

    def pairs(self, split: str, subset: str | None = None) -> PairSet:
        if split not in SPLITS:
            raise ConfigError(f"unknown {self.name} split {split!r}", hint=f"use one of {', '.join(SPLITS)}")
        layout_file = self.layout_file(split)
        stems = [line.strip() for line in layout_file.read_text().splitlines() if line.strip()]
        categories = self._subset_categories(subset)
        result = PairSet(pairs=[])
        for stem in stems:
            category = stem.rpartition(":")[2]
            if categories is not None and category not in categories:
                continue
            path = self.root / self.pair_dir / split / f"{stem}.json"
            if not path.is_file():
                if self.missing_pair_files == "skip":
                    self.skip(result.skipped, stem, "missing pair file", path, f"listed in {layout_file}")
                continue
            pair = self._read_pair(path, stem, result.skipped)
            if pair is not None:
                result.pairs.append(pair)
        return result

    @staticmethod
    def _subset_categories(subset: str | None) -> set[str] | None:
        """``subset`` is None (all pairs) or a comma-separated list of categories."""
        return None if subset is None else {c.strip() for c in subset.split(",") if c.strip()}

    def _read_pair(self, path: Path, stem: str, skipped: list[SkippedPair]) -> Pair | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.skip(skipped, stem, "malformed pair file", path, f"not valid JSON ({exc})")
            return None
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            self.skip(skipped, stem, "malformed pair file", path, f"missing field(s) {', '.join(missing)}")
            return None
        try:
            src_kps = np.asarray(data["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(data["trg_kps"], dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as exc:
            self.skip(skipped, stem, "malformed pair file", path, f"src_kps/trg_kps are not lists of [x, y] ({exc})")
            return None
        if src_kps.shape != trg_kps.shape:
            self.skip(skipped, stem, "malformed pair file", path, f"src_kps has {len(src_kps)} points but trg_kps has {len(trg_kps)}")
            return None
        kp_ids = [str(k) for k in data.get("kps_ids", range(len(src_kps)))]
        if len(kp_ids) != len(src_kps):
            self.skip(skipped, stem, "malformed pair file", path, f"kps_ids has {len(kp_ids)} entries for {len(src_kps)} keypoints")
            return None
        category = data["category"]
        try:
            src_size = (int(data["src_imsize"][0]), int(data["src_imsize"][1]))
            trg_size = (int(data["trg_imsize"][0]), int(data["trg_imsize"][1]))
        except (TypeError, ValueError, IndexError) as exc:
            self.skip(skipped, stem, "malformed pair file", path, f"src_imsize/trg_imsize are not [W, H, C] ({exc})")
            return None
        visible = np.ones(len(src_kps), dtype=bool)  # pair files list mutually visible keypoints only
        images = self.root / "JPEGImages" / category
        masks = self.root / "Segmentation" / category
        src_mask = masks / f"{Path(data['src_imname']).stem}.png"
        trg_mask = masks / f"{Path(data['trg_imname']).stem}.png"
        return Pair(
            pair_id=stem,
            category=category,
            src_image=images / data["src_imname"],
            trg_image=images / data["trg_imname"],
            src_size=src_size,
            trg_size=trg_size,
            src_kps=src_kps,
            trg_kps=trg_kps,
            src_visible=visible,
            trg_visible=visible.copy(),
            src_bbox=np.asarray(data["src_bndbox"], dtype=np.float64) if "src_bndbox" in data else None,
            trg_bbox=np.asarray(data["trg_bndbox"], dtype=np.float64) if "trg_bndbox" in data else None,
            kp_ids=tuple(kp_ids),
            src_mask=src_mask if src_mask.is_file() else None,
            trg_mask=trg_mask if trg_mask.is_file() else None,
            meta={key: data[key] for key in _VARIATION_FIELDS if key in data},
        )
