"""SPair-U (Mariotti et al., "Jamais Vu", NeurIPS 2025): SPair-71k's test pairs relabelled with new keypoints.

8,254 test pairs of SPair-71k's test images, 85 keypoint types (4-9 per category) that SPair-71k does not
annotate; only these new keypoints are scored, and there is no test-time flipping (no flip permutation
exists for them). Images and ``Layout/`` are SPair-71k's; the release adds annotations only.

Where the annotations are. The release is ``SPair-U.zip``, whose content sits under ``datasets/SPair-U/``
(MARCO's instructions unzip it and then ``mv datasets/SPair-U/* .``); inside are SPair-71k-shaped test
annotations, ``PairAnnotation/test/<stem>.json`` and ``ImageAnnotation/<cat>/<img>.json`` (Jamais Vu's README:
"the same structure as the original SPair-71k test annotations ... a drop-in replacement"; MARCO's docs show the
result). This layout is inferred from those two documents, not from the zip itself: if the archive differs,
``corrbench download`` stops with "did not contain the expected path" instead of installing something
unreadable. Two arrangements are in use, and this adapter accepts both (``annotation_layout`` option, ``auto``
by default):

``marco``       ``<data root>/SPair-U/PairAnnotation/test/<stem>.json`` (MARCO's docs/data.md), or the zip
                extracted as is, ``<data root>/SPair-U/datasets/SPair-U/PairAnnotation/test`` (what
                ``corrbench download`` produces). Images and Layout come from ``SPair-U/`` when MARCO's
                symbolic links are there, else from ``<data root>/SPair-71k/``.
``jamais-vu``   Jamais Vu's folder names, ``ExtraPairAnnotation/test/<stem>.json`` next to
                ``ExtraImageAnnotation/{cat}/*.json`` (the folders its loader reads with ``--UNSEEN_KPS``), inside
                SPair-71k (``<data root>/SPair-71k/ExtraPairAnnotation``, where that loader looks) or inside the
                SPair-U folder (``<data root>/SPair-U/ExtraPairAnnotation``: its README says to extract the
                annotations in ``data/SPair-U``). Images and Layout as for ``marco``.

``auto`` takes the first arrangement found in that order. Which one was read is logged and returned with the
pairs (``PairSet.notes["annotation_layout"]`` / ``["annotation_dir"]``, copied into the result).

Which pairs. Both arrangements are read the same way: the stems of SPair-71k's ``Layout/large/test.txt``, in
that order, that have a pair file (MARCO's loader; stems without a file are not SPair-U pairs and are dropped
silently). Jamais Vu's loader globs the folder per category instead; for the release the two agree, since
every SPair-U pair is a SPair-71k test pair, and the Layout order keeps the pair-list hash independent of the
arrangement. The pair files mirror SPair-71k's keys and list the keypoints visible in both images, row-aligned;
``ExtraImageAnnotation`` / ``ImageAnnotation`` are not needed (Jamais Vu rebuilds the same mutually visible
keypoints from them).

PCK-dagger candidates (an ASSUMPTION until a real file has been inspected). The candidate set is the set of
keypoints of the pair file visible in both images, i.e. only the NEW (SPair-U) keypoints. This is exactly what
Jamais Vu's ``--PCKD`` computes: it masks every keypoint not visible in both images out of the nearest-keypoint
search, over the keypoints of its (Extra) annotations. We assume the SPair-U files carry only the new keypoints
(the paper scores only new keypoints, and Jamais Vu scores every keypoint of these files); if they also carried
SPair-71k's original keypoints, those would be scored too and this module must change. A stricter variant,
which also penalises a prediction that lands nearer to one of SPair-71k's original keypoints (they are real
parts of the object), is offered by ``dagger_candidates="new+original"``: the original keypoints of the same
stem (SPair-71k's ``PairAnnotation/test/<stem>.json``) are appended as rows visible only in the target, so they
are candidates but never queried or scored. It is off by default because no published number uses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..types import Pair
from .base import PairSet, SkippedPair
from .download import DatasetSource
from .spair import SPAIR71K_SOURCE, SPAIR71K_URL, SPairLayout

log = logging.getLogger(__name__)

SPAIR_U_URL = "https://groups.inf.ed.ac.uk/hbilen-data/data/JamaisVuData/SPair-U.zip"
ZIP_PREFIX = Path("datasets") / "SPair-U"  # where the zip keeps its content (MARCO: `mv datasets/SPair-U/* .`)
SPAIR_U_SOURCE = DatasetSource(
    name="SPair-U annotations (Jamais Vu)",
    url=SPAIR_U_URL,
    filename="SPair-U.zip",
    provides=f"SPair-U/{ZIP_PREFIX.as_posix()}/PairAnnotation/test",
    kind="archive",
    destination="SPair-U",
)
LAYOUTS = ("auto", "marco", "jamais-vu")
DAGGER_CANDIDATES = ("new", "new+original")


@dataclass(frozen=True)
class _Location:
    layout: str  # "marco" or "jamais-vu"
    pair_folder: Path  # .../PairAnnotation/test or .../ExtraPairAnnotation/test
    base: Path  # the dataset folder that holds PairAnnotation/ (or ExtraPairAnnotation/)


class SPairU(SPairLayout):
    """SPair-U reader. ``root`` is ``<data root>/SPair-U``.

    Options: ``annotation_layout`` (``auto``, ``marco``, ``jamais-vu``), ``spair_dir`` (SPair-71k's folder under
    the data root, default ``SPair-71k``), ``dagger_candidates`` (``new`` or ``new+original``, see the module
    docstring).
    """

    name = "SPair-U"
    instructions = (
        f"SPair-U needs SPair-71k ({SPAIR71K_URL}, extracted so that <data root>/SPair-71k/Layout/large/test.txt "
        f"exists) and the SPair-U annotations ({SPAIR_U_URL}), either extracted into <data root>/SPair-U (MARCO's "
        "layout: SPair-U/PairAnnotation/test/*.json, or the zip's own SPair-U/datasets/SPair-U/PairAnnotation) or "
        "placed inside SPair-71k (or inside SPair-U) as ExtraPairAnnotation/test and ExtraImageAnnotation (Jamais "
        "Vu's layout)"
    )
    sources = (SPAIR71K_SOURCE, SPAIR_U_SOURCE)
    segmentation_labels = SPairLayout.segmentation_labels  # SPair-71k's images, hence its Segmentation/

    def __init__(self, root: Path, *, annotation_layout: str = "auto", spair_dir: str = "SPair-71k",
                 dagger_candidates: str = "new", **options: Any):
        options.setdefault("missing_pair_files", "ignore")  # Layout stems without an SPair-U file are not pairs
        super().__init__(root, **options)
        if annotation_layout not in LAYOUTS:
            raise ConfigError(
                f"SPair-U annotation_layout must be one of {', '.join(LAYOUTS)}, got {annotation_layout!r}"
            )
        if dagger_candidates not in DAGGER_CANDIDATES:
            raise ConfigError(
                f"SPair-U dagger_candidates must be one of {', '.join(DAGGER_CANDIDATES)}, got {dagger_candidates!r}"
            )
        self.annotation_layout = annotation_layout
        self.spair_root = self.data_root / spair_dir
        self.dagger_candidates = dagger_candidates
        self._location: _Location | None = None

    # Where things are -----------------------------------------------------------------------------------
    def _candidates(self) -> list[_Location]:
        found = []
        if self.annotation_layout in ("auto", "marco"):
            for base in (self.root, self.root / ZIP_PREFIX):
                found.append(_Location("marco", base / "PairAnnotation" / "test", base))
        if self.annotation_layout in ("auto", "jamais-vu"):
            for base in (self.spair_root, self.root):
                found.append(_Location("jamais-vu", base / "ExtraPairAnnotation" / "test", base))
        return found

    def locate(self) -> _Location | None:
        """The first arrangement whose pair folder exists (remembered), or None."""
        if self._location is None:
            self._location = next((c for c in self._candidates() if c.pair_folder.is_dir()), None)
        return self._location

    def _shared(self, relative: str) -> Path:
        """A part of SPair-71k (JPEGImages, Layout, Segmentation): in the SPair-U folder when MARCO's
        symbolic links put it there, else in SPair-71k's own folder."""
        location = self.locate()
        if location is not None and location.base != self.spair_root:
            for base in (location.base, self.root):
                if (base / relative).exists():
                    return base / relative
        return self.spair_root / relative

    def layout_file(self, split: str) -> Path:
        return self._shared(f"Layout/{self.layout}/{split}.txt")

    def pair_folder(self, split: str) -> Path:
        location = self.locate()
        if location is None:
            raise DataError(f"no SPair-U annotations found under {self.root} or {self.spair_root}",
                            hint=self.instructions)
        return location.pair_folder

    @property
    def images_dir(self) -> Path:
        return self._shared("JPEGImages")

    @property
    def masks_dir(self) -> Path:
        return self._shared("Segmentation")

    def is_available(self) -> bool:
        return self.locate() is not None and self.layout_file("test").is_file() and self.images_dir.is_dir()

    # Reading ---------------------------------------------------------------------------------------------
    def check_split(self, split: str) -> None:
        if split != "test":
            raise ConfigError(f"SPair-U has only a test split, not {split!r}", hint="use split 'test'")

    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        location = self.locate()
        base = super().read_pairs(split, subset)  # raises the DataError of pair_folder() when nothing is there
        assert location is not None
        log.info("SPair-U: read %d pairs from the %s layout (%s)", len(base.pairs), location.layout,
                 location.pair_folder)
        base.notes.update(annotation_layout=location.layout, annotation_dir=str(location.pair_folder))
        return base

    def _read_pair(self, path: Path, stem: str, skipped: list[SkippedPair]) -> Pair | None:
        pair = super()._read_pair(path, stem, skipped)
        if pair is None or self.dagger_candidates == "new":
            return pair
        return self._with_original_candidates(pair, skipped)

    def _with_original_candidates(self, pair: Pair, skipped: list[SkippedPair]) -> Pair | None:
        """Append SPair-71k's keypoints of the same stem as target-only rows: PCK-dagger candidates that are
        never queried or scored (``src_visible`` False)."""
        original_path = self.spair_root / "PairAnnotation" / "test" / f"{pair.pair_id}.json"
        if not original_path.is_file():
            self.skip(skipped, pair.pair_id, "missing pair file", original_path,
                      "dagger_candidates='new+original' needs SPair-71k's pair file of the same stem")
            return None
        original = self.load_pair_json(original_path, pair.pair_id, skipped)
        if original is None:
            return None
        extra = len(original["trg_kps"])
        return Pair(
            pair_id=pair.pair_id,
            category=pair.category,
            src_image=pair.src_image,
            trg_image=pair.trg_image,
            src_size=pair.src_size,
            trg_size=pair.trg_size,
            src_kps=np.vstack([pair.src_kps, original["src_kps"]]),
            trg_kps=np.vstack([pair.trg_kps, original["trg_kps"]]),
            src_visible=np.concatenate([pair.src_visible, np.zeros(extra, dtype=bool)]),
            trg_visible=np.concatenate([pair.trg_visible, np.ones(extra, dtype=bool)]),
            src_bbox=pair.src_bbox,
            trg_bbox=pair.trg_bbox,
            kp_ids=pair.kp_ids + tuple(f"spair71k:{k}" for k in original["kps_ids"]),
            src_mask=pair.src_mask,
            trg_mask=pair.trg_mask,
            meta=pair.meta,
        )
