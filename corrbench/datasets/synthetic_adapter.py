"""The synthetic benchmark's data: generated on first use, then read with the SPair-71k layout reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from .spair import SPairLayout

MANIFEST = "synthetic_manifest.json"


class SyntheticDataset(SPairLayout):
    """SPair-layout reader over a dataset that ``generate_synthetic`` writes when it is missing.

    Options: ``seed`` (the generator seed recorded in the benchmark spec) and the SPair reader's options.
    """

    name = "synthetic"

    def __init__(self, root: Path, *, seed: int = 0, **options: Any):
        from .synthetic import CATEGORIES

        super().__init__(root, **options)
        self.seed = seed
        # the generator writes each category's 1-based index into Segmentation/
        self.segmentation_labels = {name: i + 1 for i, name in enumerate(CATEGORIES)}

    def is_available(self) -> bool:
        return (self.root / MANIFEST).is_file()

    def prepare(self, progress: bool = True, download: bool = True) -> None:
        """Generate the dataset when it is missing (it is made here, never downloaded)."""
        from .synthetic import GENERATOR_VERSION, generate_synthetic

        if not self.is_available():
            if self.root.exists() and any(self.root.iterdir()):
                raise DataError(
                    f"{self.root} exists but holds no {MANIFEST}: not a complete synthetic dataset",
                    hint=f"delete {self.root} and run again to regenerate it",
                )
            generate_synthetic(self.root, seed=self.seed, progress=progress)
            return
        manifest = json.loads((self.root / MANIFEST).read_text())
        found = (manifest.get("generator_version"), manifest.get("seed"))
        if found != (GENERATOR_VERSION, self.seed):
            raise DataError(
                f"{self.root} was generated with generator version {found[0]} and seed {found[1]}, "
                f"but this benchmark needs version {GENERATOR_VERSION} and seed {self.seed}",
                hint=f"delete {self.root} and run again to regenerate it",
            )
