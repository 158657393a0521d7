"""A pseudo-label folder written by ``corrbench pseudo-labels`` (DIY-SC's pseudo-labels): SPair-71k's layout,
read by the SPair reader; its trn/val pair files are pseudo-labels, its test split is the source's.

``GENERATORS`` names what writes such folders (``corrbench pseudo-labels --method NAME``): a registry like
``METHODS``, filled from the entry-point group ``corrbench.pseudo_labels`` (``diy-sc``:
``methods/geoaware/pseudo_label_folder.py``), so the core names no method. A generator is a callable
``generate(*, data_root, out, device, batch_size, download, progress, **settings)`` returning
``(folder, manifest, training_hint)``.

What differs from reading it as plain SPair-71k: nothing is ever downloaded into it (a missing folder is
generated, not fetched), it counts as present only once the generation finished (its manifest says
``complete``), and the segmentation label values are the source dataset's (from the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files import UnreadableJSON, read_json
from ..registry import Registry
from .spair import SPairLayout

MANIFEST = "pseudo_labels_manifest.json"  # completed last by the generator


def _check_generator(name: str, obj: Any) -> None:
    if not callable(obj):
        raise ConfigError(f"pseudo-label generator {name!r} resolves to {obj!r}, which is not callable")


GENERATORS: Registry = Registry("pseudo-label generator", "corrbench.pseudo_labels", _check_generator, listed=False)


class PseudoLabelFolder(SPairLayout):
    name = "pseudo-label folder"
    instructions = ("generate it with `corrbench pseudo-labels --source BENCHMARK` (it writes "
                    "<data root>/<source folder>-DIY-SC), or finish an interrupted run by running it again")

    def __init__(self, root: Path, **options: Any):
        super().__init__(root, **options)
        manifest = self._manifest()
        self.segmentation_labels = {k: int(v) for k, v in manifest.get("segmentation_labels", {}).items()}

    def _manifest(self) -> dict[str, Any]:
        try:
            manifest = read_json(self.root / MANIFEST)
        except UnreadableJSON:
            return {}
        return manifest if isinstance(manifest, dict) else {}

    def is_available(self) -> bool:
        return super().is_available() and self._manifest().get("complete") is True
