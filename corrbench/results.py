"""Result files: one schema-versioned JSON per run, written atomically, with per-pair scores beside it.

A run directory ``<out>/<benchmark>/<method>/<run-id>/`` holds:

``run.json``          the identity of the predictions (method, config, weights, benchmark, pairs, limit, dtype);
                      a run with another identity gets another directory, so settings never mix
``predictions.jsonl`` predicted target points per pair (original pixels): resume and re-score from here
``pairs.jsonl``       per-pair correctness counts at every alpha (``corrbench.metrics.PairScore``)
``result.json``       the result: protocol, method, counts, timing, environment and every aggregation
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import ResultsError
from .files import json_identity_hash

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
PAIRS_FILE = "pairs.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "run.json"

_REQUIRED = ("schema_version", "command", "created_at", "benchmark", "method", "counts", "timing", "env", "metrics")


def safe_name(name: str) -> str:
    """A method or benchmark name as a directory name (file references like ``x.py:Cls`` included)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"


def run_directory(out: Path, benchmark: str, method: str, identity: dict[str, Any]) -> Path:
    return Path(out) / safe_name(benchmark) / safe_name(method) / json_identity_hash(identity)[:12]


def load_result(path: Path) -> dict[str, Any]:
    """Read and check one result file."""
    try:
        data = json.loads(Path(path).read_bytes())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"cannot read result {path}: {exc}") from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version != SCHEMA_VERSION:
        raise ResultsError(
            f"{path} has result schema version {version!r}; this corrbench reads version {SCHEMA_VERSION}",
            hint="re-score the run with `corrbench run ... --rescore` using this corrbench version",
        )
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise ResultsError(f"{path} lacks field(s) {', '.join(missing)}")
    data["_path"] = str(path)
    return data


def find_results(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All readable results under ``root``, and a message for each unreadable one."""
    results, problems = [], []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            results.append(load_result(path))
        except ResultsError as exc:
            problems.append(str(exc))
    return results, problems
