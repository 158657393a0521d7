"""What every dataset adapter provides: a check that the data is there, and the pairs of a split.

The rules every dataset shares live here, once: a pair whose image file is missing, or whose annotation puts a
visible keypoint where no image pixel can be, is skipped and counted under ``counts.skipped`` (naming the file),
or with ``--strict`` stops the run (``DatasetAdapter.pairs`` applies them to whatever ``read_pairs`` found).
"""

from __future__ import annotations

import abc
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import DataError
from .download import DatasetSource, fetch_source

if TYPE_CHECKING:  # the adapters' builders and `corrbench download` stay free of torch
    from ..types import Pair

#: How far outside its image a visible keypoint may lie before its annotation is refused, as a fraction of the
#: image's longer side. Real annotations do sit outside sometimes: in MP-100's test files (the real release
#: files, 144,687 visible keypoints) 69 lie outside their image, by up to 0.14 of the longer side in a category
#: that is scored (macaque_body, 264 px of 1,867) and 0.26 in one that is not (the id-18 "face" on
#: amur_tiger_body/, where the recorded width and height look swapped). Half the longer side keeps all of them
#: and still catches what no annotation tool writes: coordinates in the wrong unit or row, 1e9, NaN.
KEYPOINT_MARGIN = 0.5
SKIP_MISSING_IMAGE = "missing image"
SKIP_BAD_KEYPOINT = "keypoint off the image"


@dataclass(frozen=True)
class SkippedPair:
    """A pair the adapter could not use, and why (reported in the result's ``counts.skipped``)."""

    name: str
    reason: str  # a short fixed phrase, so results can count pairs per reason
    file: str = ""
    detail: str = ""


@dataclass
class PairSet:
    """The pairs of one split, in the dataset's listing order, plus what was skipped while reading."""

    pairs: list[Pair]
    skipped: list[SkippedPair] = field(default_factory=list)
    #: What the adapter found on disk that decides how it read the data (an annotation layout, a pair-list
    #: convention); copied into the result under ``benchmark.data``.
    notes: dict[str, Any] = field(default_factory=dict)
    #: pair id -> the annotation files its source and target keypoints were read from (named when the pair is
    #: screened out, see ``DatasetAdapter.pairs``).
    annotations: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, pair: Pair, annotation: Path | str, trg_annotation: Path | str | None = None) -> None:
        """Keep ``pair``, whose keypoints come from ``annotation`` (the target's from ``trg_annotation`` when the
        dataset keeps one file per image)."""
        self.pairs.append(pair)
        self.annotations[pair.pair_id] = (str(annotation), str(trg_annotation or annotation))

    def fingerprint(self) -> str:
        """sha256 of the ordered pair ids: two runs scored the same pairs iff these agree."""
        digest = hashlib.sha256()
        for pair in self.pairs:
            digest.update(pair.pair_id.encode())
            digest.update(b"\n")
        return digest.hexdigest()

    def categories(self) -> list[str]:
        return sorted({p.category for p in self.pairs})


class DatasetAdapter(abc.ABC):
    """Reads one dataset's on-disk layout.

    ``root`` is the dataset folder (data root / ``BenchmarkSpec.data_dir``). ``strict`` turns every
    malformed pair into an error instead of a skipped pair.
    """

    name: ClassVar[str]
    #: Shown when the data is missing: where it comes from and what to put where.
    instructions: ClassVar[str] = ""
    #: What ``corrbench download`` fetches (relative to the data root), in order.
    sources: ClassVar[tuple[DatasetSource, ...]] = ()

    def __init__(self, root: Path, *, strict: bool = False, **options: Any):
        self.root = Path(root)
        self.data_root = self.root.parent  # root is <data root>/<BenchmarkSpec.data_dir>
        self.strict = strict
        self.options = options
        self._existing_files: dict[Path, bool] = {}

    @abc.abstractmethod
    def is_available(self) -> bool:
        """Whether the data is on disk."""

    def prepare(self, progress: bool = True, download: bool = True) -> None:
        """Make sure the data is on disk: download what is missing (when allowed and possible), or raise a
        DataError that says where it comes from and which directory to fill."""
        if self.is_available():
            return
        missing = [s for s in self.sources if not s.is_present(self.data_root)]
        if download and missing and all(s.automatic for s in missing):
            for source in missing:
                fetch_source(source, self.data_root, progress=progress)
            if self.is_available():
                return
        raise DataError(f"{self.name} data not found at {self.root}", hint=self.missing_data_hint(missing, download))

    def missing_data_hint(self, missing: list[DatasetSource], download: bool) -> str:
        lines = [self.instructions] if self.instructions else []
        for source in missing:
            where = self.data_root / (source.destination if source.kind == "archive" else source.provides)
            if source.automatic:
                lines.append(f"{source.name}: {source.url} -> {where}")
            else:
                lines.append(f"{source.name} (manual): {source.manual} -> {where}")
        if download and any(s.automatic for s in missing) and not all(s.automatic for s in missing):
            lines.append("the parts that need a manual step must be in place before the rest is downloaded")
        elif not download and any(s.automatic for s in missing):
            lines.append("run `corrbench download` for this benchmark, or drop --no-download")
        lines.append("the data root is --data-root, else $CORRBENCH_DATA, else ~/.cache/corrbench/data")
        return "\n  ".join(lines)

    def pairs(self, split: str, subset: str | None = None) -> PairSet:
        """The pairs of ``split`` (optionally restricted to an adapter-defined ``subset``) that can be scored:
        what ``read_pairs`` found, less the pairs with a missing image or an impossible keypoint (skipped)."""
        found = self.read_pairs(split, subset)
        found.pairs = [pair for pair in found.pairs if self._admissible(pair, found)]
        return found

    @abc.abstractmethod
    def read_pairs(self, split: str, subset: str | None = None) -> PairSet:
        """Every pair the annotations list for ``split``; the adapter skips what is malformed in its format."""

    def file_exists(self, path: Path) -> bool:
        """``path.is_file()``, remembered: an image is shared by many pairs."""
        if path not in self._existing_files:
            self._existing_files[path] = path.is_file()
        return self._existing_files[path]

    def skip_missing_image(self, skipped: list[SkippedPair], name: str, image: Path, context: str) -> None:
        """The one record of a pair whose image file is absent (every adapter's, however it found out);
        ``context`` says where the image is named ("named in <file>")."""
        hint = self.missing_image_hint(image)
        self.skip(skipped, name, SKIP_MISSING_IMAGE, image, context + (f"; {hint}" if hint else ""),
                  strict_hint="put the image at that path (the dataset is incomplete), or run without --strict "
                              "to skip its pairs")

    def missing_image_hint(self, image: Path) -> str:
        """Where a missing image comes from, for datasets assembled by hand (default: nothing to add)."""
        return ""

    def _admissible(self, pair: Pair, found: PairSet) -> bool:
        files = dict(zip(("src", "trg"), found.annotations.get(pair.pair_id, ("", ""))))
        for side, image in (("src", pair.src_image), ("trg", pair.trg_image)):
            if not self.file_exists(image):
                self.skip_missing_image(found.skipped, pair.pair_id, image, f"named in {files[side] or pair.pair_id}")
                return False
        problem = keypoint_problem(pair)
        if problem is not None:
            side, detail = problem
            self.skip(found.skipped, pair.pair_id, SKIP_BAD_KEYPOINT, files[side], detail)
            return False
        return True

    def skip(self, skipped: list[SkippedPair], name: str, reason: str, file: Path | str = "", detail: str = "",
             strict_hint: str = "fix or remove the file, or run without --strict to skip it") -> None:
        """Record a malformed pair, or raise in strict mode (``strict_hint``: the fix, where ``file`` is not
        the thing to edit, e.g. an image that does not exist)."""
        if self.strict:
            raise DataError(f"{file or name}: {reason}{': ' + detail if detail else ''}", hint=strict_hint)
        skipped.append(SkippedPair(name, reason, str(file), detail))


def keypoint_problem(pair: Pair) -> tuple[str, str] | None:
    """``(side, why)`` when a visible keypoint of ``pair`` cannot be right (not finite, or outside its image by
    more than ``KEYPOINT_MARGIN`` of the longer side), or None when every visible keypoint is plausible."""
    for side in ("src", "trg"):
        points, visible = getattr(pair, f"{side}_kps"), getattr(pair, f"{side}_visible")
        width, height = getattr(pair, f"{side}_size")
        margin = KEYPOINT_MARGIN * max(width, height)
        for row in map(int, visible.nonzero()[0]):
            x, y = (float(v) for v in points[row])
            if not (math.isfinite(x) and math.isfinite(y)):
                return side, f"{side} keypoint {row} is ({x:g}, {y:g}): not a number, in pair {pair.pair_id}"
            if not (-margin <= x <= width - 1 + margin and -margin <= y <= height - 1 + margin):
                return side, (f"{side} keypoint {row} at ({x:g}, {y:g}) lies outside the {width}x{height} image by "
                              f"more than {KEYPOINT_MARGIN:g} of its longer side ({margin:g} px) in pair {pair.pair_id}")
    return None
