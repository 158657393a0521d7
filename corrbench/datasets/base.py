"""What every dataset adapter provides: a check that the data is there, and the pairs of a split."""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DataError
from ..types import Pair


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

    def __init__(self, root: Path, *, strict: bool = False, **options: Any):
        self.root = Path(root)
        self.strict = strict
        self.options = options

    @abc.abstractmethod
    def is_available(self) -> bool:
        """Whether the data is on disk."""

    def prepare(self, progress: bool = True) -> None:
        """Make sure the data is on disk, or raise a DataError that says how to get it."""
        if not self.is_available():
            raise DataError(
                f"{self.name} data not found at {self.root}",
                hint=self.instructions or "put the dataset there, or point --data-root / $CORRBENCH_DATA at it",
            )

    @abc.abstractmethod
    def pairs(self, split: str, subset: str | None = None) -> PairSet:
        """The pairs of ``split`` (optionally restricted to an adapter-defined ``subset``)."""

    def skip(self, skipped: list[SkippedPair], name: str, reason: str, file: Path | str = "", detail: str = "") -> None:
        """Record a malformed pair, or raise in strict mode."""
        if self.strict:
            raise DataError(
                f"{file or name}: {reason}{': ' + detail if detail else ''}",
                hint="fix or remove the file, or run without --strict to skip it",
            )
        skipped.append(SkippedPair(name, reason, str(file), detail))
