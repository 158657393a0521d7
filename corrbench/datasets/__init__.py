"""Dataset adapters: each reads one dataset's real on-disk layout into ``Pair`` records.

``DATASETS`` maps the ``dataset`` field of a BenchmarkSpec to its adapter class. It is the same ``Registry`` as
methods' and benchmarks' (did-you-mean for unknown names; more adapters through the entry-point group
``corrbench.datasets``). The names are stored in saved results (``benchmark.dataset``): never rename one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..registry import Registry
from .base import DatasetAdapter, PairSet, SkippedPair
from .download import DatasetSource

if TYPE_CHECKING:
    from ..protocol import BenchmarkSpec


def _check_adapter(name: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, DatasetAdapter)):
        raise ConfigError(f"dataset adapter {name!r} resolves to {obj!r}, which is not a DatasetAdapter subclass")


DATASETS: Registry = Registry("dataset adapter", "corrbench.datasets", _check_adapter, listed=False)
# Lazy "module:Class" targets: an adapter's module (and its dependencies) loads only when a benchmark uses it.
for _name, _target in {
    "spair": "corrbench.datasets.spair:SPairLayout",
    "spair-u": "corrbench.datasets.spair_u:SPairU",
    "pf-pascal": "corrbench.datasets.pf_pascal:PFPascal",
    "pf-willow": "corrbench.datasets.pf_willow:PFWillow",
    "ap10k": "corrbench.datasets.ap10k.adapter:AP10K",
    "mp100": "corrbench.datasets.mp100.adapter:MP100",
    "synthetic": "corrbench.datasets.synthetic.adapter:SyntheticDataset",
    "pseudo-labels": "corrbench.datasets.pseudo_labels:PseudoLabelFolder",
}.items():
    DATASETS.register(_name, _target, origin="corrbench")


def make_adapter(spec: "BenchmarkSpec", data_root: Path, *, strict: bool = False) -> DatasetAdapter:
    """The adapter of ``spec`` over its folder in ``data_root``."""
    cls = DATASETS.get(spec.dataset)
    return cls(Path(data_root) / spec.data_dir, strict=strict, **dict(spec.adapter_options))


__all__ = ["DATASETS", "DatasetAdapter", "DatasetSource", "PairSet", "SkippedPair", "make_adapter"]
