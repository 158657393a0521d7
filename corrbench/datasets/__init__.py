"""Dataset adapters: each reads one dataset's real on-disk layout into ``Pair`` records.

``ADAPTERS`` maps the ``dataset`` field of a BenchmarkSpec to its adapter class.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import DatasetAdapter, PairSet, SkippedPair
from .spair import SPairLayout
from .synthetic_adapter import SyntheticDataset

if TYPE_CHECKING:
    from ..protocol import BenchmarkSpec

ADAPTERS: dict[str, type[DatasetAdapter]] = {
    "spair": SPairLayout,
    "synthetic": SyntheticDataset,
}


def make_adapter(spec: "BenchmarkSpec", data_root: Path, *, strict: bool = False) -> DatasetAdapter:
    """The adapter of ``spec`` over its folder in ``data_root``."""
    if spec.dataset not in ADAPTERS:
        raise ConfigError(
            f"benchmark {spec.name!r} names unknown dataset adapter {spec.dataset!r}",
            hint=f"known adapters: {', '.join(sorted(ADAPTERS))}",
        )
    return ADAPTERS[spec.dataset](Path(data_root) / spec.data_dir, strict=strict, **dict(spec.adapter_options))


__all__ = ["ADAPTERS", "DatasetAdapter", "PairSet", "SkippedPair", "make_adapter"]
