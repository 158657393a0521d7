"""The synthetic benchmark's data: generated on first use, then read with the SPair-71k layout reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import DataError
from ...files import UnreadableJSON, read_json
from ..spair import SPairLayout
from .generate import generate_synthetic
from .layout import GENERATOR_VERSION, MANIFEST_NAME, SEGMENTATION_LABELS, check_generation_arguments


class SyntheticDataset(SPairLayout):
    """SPair-layout reader over a dataset that ``generate_synthetic`` writes when it is missing.

    Options: the generator arguments recorded in the benchmark spec (``seed``, ``images_per_category``,
    ``pairs_per_category``: ``{split: pairs}``, splits left out keep the generator's defaults) and the SPair
    reader's options. An existing dataset must have been generated with exactly these arguments: its
    manifest is checked, so a folder made with other arguments never silently stands in for the benchmark.
    """

    name = "synthetic"

    def __init__(self, root: Path, *, seed: int = 0, images_per_category: int = 12,
                 pairs_per_category: dict[str, int] | None = None, **options: Any):
        super().__init__(root, **options)
        self.seed = seed
        self.images_per_category = images_per_category
        # the generator's own validation and defaults: one home for both
        self.pairs_per_category = check_generation_arguments(seed, images_per_category, pairs_per_category)
        self.segmentation_labels = SEGMENTATION_LABELS  # what the generator writes into Segmentation/

    def is_available(self) -> bool:
        return (self.root / MANIFEST_NAME).is_file()

    def prepare(self, progress: bool = True, download: bool = True) -> None:
        """Generate the dataset when it is missing (it is made here, never downloaded)."""
        if not self.is_available():
            if self.root.exists() and any(self.root.iterdir()):
                raise DataError(
                    f"{self.root} exists but holds no {MANIFEST_NAME}: not a complete synthetic dataset",
                    hint=f"delete {self.root} and run again to regenerate it",
                )
            generate_synthetic(self.root, seed=self.seed, images_per_category=self.images_per_category,
                               pairs_per_category=self.pairs_per_category, progress=progress)
            return
        self._check_manifest()

    def _check_manifest(self) -> None:
        """Refuse a folder generated with other arguments (or whose manifest is unreadable)."""
        try:
            manifest = read_json(self.root / MANIFEST_NAME)
        except UnreadableJSON as exc:
            raise DataError(f"{self.root / MANIFEST_NAME}: not valid JSON ({exc})",
                            hint=f"delete {self.root} and run again to regenerate it") from None
        if not isinstance(manifest, dict):
            raise DataError(f"{self.root / MANIFEST_NAME}: expected a JSON object, found {type(manifest).__name__}",
                            hint=f"delete {self.root} and run again to regenerate it")
        wanted = {
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "images_per_category": self.images_per_category,
            "pairs_per_category": self.pairs_per_category,
        }
        found = {
            "generator_version": manifest.get("generator_version"),
            "seed": manifest.get("seed"),
            **(manifest.get("arguments") or {}),
        }
        different = [key for key in wanted if found.get(key) != wanted[key]]
        if different:
            listed = "; ".join(f"{key} {found.get(key)!r} (needs {wanted[key]!r})" for key in different)
            raise DataError(
                f"{self.root / MANIFEST_NAME} records other generation arguments than this benchmark's: {listed}",
                hint=f"delete {self.root} and run again to regenerate it",
            )
