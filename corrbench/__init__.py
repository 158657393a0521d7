"""corrbench: semantic-correspondence methods meet benchmarks under one explicit, versioned protocol.

The public names below are imported on first use, so ``corrbench table`` and ``corrbench ls`` start
without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BenchmarkSpec": "corrbench.protocol",
    "Protocol": "corrbench.protocol",
    "Matcher": "corrbench.matcher",
    "FeatureMatcher": "corrbench.matcher",
    "Pair": "corrbench.types",
    "PairBatch": "corrbench.types",
    "MatchOutput": "corrbench.types",
    "FeatureMap": "corrbench.types",
    "METHODS": "corrbench.registry",
    "BENCHMARKS": "corrbench.registry",
    "register_method": "corrbench.registry",
    "register_benchmark": "corrbench.registry",
    "CorrbenchError": "corrbench.errors",
    "ConfigError": "corrbench.errors",
    "DataError": "corrbench.errors",
    "MatcherContractError": "corrbench.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'corrbench' has no attribute {name!r}")
