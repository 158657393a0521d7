"""Dataset adapters: each reads one dataset's real on-disk layout into ``Pair`` records.

``ADAPTERS`` maps the ``dataset`` field of a BenchmarkSpec to its adapter class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import DatasetAdapter, PairSet, SkippedPair
from .download import DatasetSource

if TYPE_CHECKING:
    from ..protocol import BenchmarkSpec

# Lazy "module:Class" targets: an adapter's module (and its dependencies) loads only when a benchmark uses it.
ADAPTERS: dict[str, str] = {
    "spair": "corrbench.datasets.spair:SPairLayout",
    "spair-u": "corrbench.datasets.spair_u:SPairU",
    "pf-pascal": "corrbench.datasets.pf_pascal:PFPascal",
    "pf-willow": "corrbench.datasets.pf_willow:PFWillow",
    "ap10k": "corrbench.datasets.ap10k:AP10K",
    "mp100": "corrbench.datasets.mp100:MP100",
    "synthetic": "corrbench.datasets.synthetic_adapter:SyntheticDataset",
}


def adapter_class(key: str) -> type[DatasetAdapter]:
    from ..registry import import_target

    if key not in ADAPTERS:
        raise ConfigError(f"unknown dataset adapter {key!r}", hint=f"known adapters: {', '.join(sorted(ADAPTERS))}")
    return import_target(ADAPTERS[key])


def make_adapter(spec: "BenchmarkSpec", data_root: Path, *, strict: bool = False) -> DatasetAdapter:
    """The adapter of ``spec`` over its folder in ``data_root``."""
    cls = adapter_class(spec.dataset)
    return cls(Path(data_root) / spec.data_dir, strict=strict, **dict(spec.adapter_options))


__all__ = ["ADAPTERS", "DatasetAdapter", "DatasetSource", "PairSet", "SkippedPair", "adapter_class", "make_adapter"]
