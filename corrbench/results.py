"""Result files: one schema-versioned JSON per run, written atomically, with per-pair scores beside it.

A run directory ``<out>/<benchmark>/<method>/<run-id>/`` holds:

``run.json``          the identity of the predictions (method, config, weights, benchmark, pairs, limit, dtype);
                      a run with another identity gets another directory, so settings never mix
``predictions.jsonl`` predicted target points per pair (original pixels): resume and re-score from here
``pairs.jsonl``       per-pair correctness counts at every alpha (``corrbench.metrics.PairScore``)
``result.json``       the result: protocol, method, counts, timing, environment and every aggregation

``ResultRecord`` is what ``result.json`` holds, and ``build_result`` the one place that assembles it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ResultsError
from .files import UnreadableJSON, json_identity_hash, read_json, write_json_atomic

if TYPE_CHECKING:  # for the annotations only: `corrbench table` reads results without importing datasets
    from .datasets import PairSet
    from .protocol import BenchmarkSpec

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
PAIRS_FILE = "pairs.jsonl"
PREDICTIONS_FILE = "predictions.jsonl"
RUN_FILE = "run.json"

#: Fields a result file must have to be read (``partial`` and ``files`` have defaults).
_REQUIRED = ("schema_version", "command", "created_at", "benchmark", "method", "counts", "timing", "env", "metrics")
#: How many skipped pairs a result lists in full (file, reason, detail), so a broken dataset is easy to inspect.
SKIPPED_PAIRS_LISTED = 200


def _run_files() -> dict[str, str]:
    return {"pairs": PAIRS_FILE, "predictions": PREDICTIONS_FILE, "run": RUN_FILE}


def utc_timestamp() -> str:
    """Now, in UTC to the second (ISO 8601): the ``created_at`` of every record corrbench writes."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True, kw_only=True)
class ResultRecord:
    """One run's result, field by field in the order ``result.json`` has them (``to_json`` keeps that order,
    so a run written before this record existed and one written now are the same bytes)."""

    schema_version: int = SCHEMA_VERSION
    command: str  # the command line that made the run
    created_at: str  # ``utc_timestamp()`` when the result was written
    partial: bool = False  # fewer pairs scored than the benchmark lists (``--limit``)
    # the whole spec with its protocol, its key, the scored pair list's fingerprint, what the adapter found on
    # disk (``data``) and the keypoint margin of the reading rule that decides which pairs score
    benchmark: dict[str, Any]
    method: dict[str, Any]  # name, class, config, weights, parameter counts, whether it used ground truth
    counts: dict[str, Any]  # pairs, points, categories, limit, skipped pairs by reason and the first few in full
    timing: dict[str, Any]  # resumed / predicted pairs, seconds per stage, the feature cache's statistics
    env: dict[str, Any]  # corrbench, git commit, python, torch, device, dtype, batch size, seed
    metrics: dict[str, Any]  # {"pck", "pck_dagger"} -> {"image", "point"} -> aggregation -> alpha -> percent
    files: dict[str, str] = field(default_factory=_run_files)  # the run directory's other files

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: Any, source: Path | str) -> ResultRecord:
        """The record in ``data`` (read from ``source``, named in errors); keys this schema lacks are ignored."""
        version = data.get("schema_version") if isinstance(data, dict) else None
        if version != SCHEMA_VERSION:
            raise ResultsError(
                f"{source} has result schema version {version!r}; this corrbench reads version {SCHEMA_VERSION}",
                hint="re-score the run with `corrbench run ... --rescore` using this corrbench version",
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ResultsError(f"{source} lacks field(s) {', '.join(missing)}")
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})

    def write(self, directory: Path) -> Path:
        """Write ``directory/result.json`` atomically; returns its path."""
        path = Path(directory) / RESULT_FILE
        write_json_atomic(path, self.to_json())
        return path


def build_result(*, command: str, spec: BenchmarkSpec, pairset: PairSet, scored: PairSet, method: dict[str, Any],
                 summary: dict[str, Any], limit: int | None, timing: dict[str, Any], env: dict[str, Any],
                 keypoint_margin: float) -> ResultRecord:
    """The result of scoring ``scored`` (the pairs of ``pairset`` this run scored) on ``spec``, with the
    accumulator's ``summary`` and the harness's ``timing`` and ``env``."""
    return ResultRecord(
        command=command,
        created_at=utc_timestamp(),
        partial=len(scored.pairs) < len(pairset.pairs),
        benchmark={**spec.to_json(), "key": spec.key, "pairs_fingerprint": scored.fingerprint(),
                   "data": dict(pairset.notes), "keypoint_margin": keypoint_margin},
        method=method,
        counts=_counts(pairset, summary["counts"], limit),
        timing=timing,
        env=env,
        metrics={"pck": summary["pck"], "pck_dagger": summary["pck_dagger"]},
    )


def _counts(pairset: PairSet, scored: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """Pairs listed, scored and skipped (by reason: skipped while reading ``pairset`` and while scoring)."""
    skipped = Counter(s.reason for s in pairset.skipped)
    skipped.update(scored["skipped"])
    return {
        "pairs_listed": len(pairset.pairs) + len(pairset.skipped),
        "pairs": scored["pairs"],
        "points": scored["points"],
        "categories": scored["categories"],
        "limit": limit,
        "skipped": {reason: n for reason, n in sorted(skipped.items()) if n},
        "skipped_pairs": [vars(s) for s in pairset.skipped[:SKIPPED_PAIRS_LISTED]],
    }


def safe_name(name: str) -> str:
    """A method or benchmark name as a directory name (file references like ``x.py:Cls`` included)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "unnamed"


def run_directory(out: Path, benchmark: str, method: str, identity: dict[str, Any]) -> Path:
    return Path(out) / safe_name(benchmark) / safe_name(method) / json_identity_hash(identity)[:12]


def load_result(path: Path) -> dict[str, Any]:
    """Read and check one result file: its record as JSON (what ``corrbench table`` reads), with ``_path``."""
    try:
        data = read_json(path)
    except UnreadableJSON as exc:
        raise ResultsError(f"cannot read result {path}: {exc}") from None
    return {**ResultRecord.from_json(data, path).to_json(), "_path": str(path)}


def find_results(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All readable results under ``root``, and a message for each unreadable one."""
    results, problems = [], []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            results.append(load_result(path))
        except ResultsError as exc:
            problems.append(str(exc))
    return results, problems
