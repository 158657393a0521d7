"""A check that a result's summary says what its per-pair scores say (for runs whose value is arbitrary, such
as random weights, where a range check alone would pass whatever was computed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from corrbench.metrics import ALPHAS, alpha_key


def assert_summary_matches_pair_scores(result: dict, directory: Path) -> None:
    """Per-image and per-point PCK and PCK-dagger (all pairs pooled) recomputed from ``pairs.jsonl``."""
    scores = [json.loads(line) for line in (directory / "pairs.jsonl").read_text().splitlines()]
    scored = [s for s in scores if s["n_points"] > 0]
    assert scored, "no pair was scored"
    points = sum(s["n_points"] for s in scored)
    for metric, field in (("pck", "correct"), ("pck_dagger", "correct_dagger")):
        for i, alpha in enumerate(ALPHAS):
            per_image = 100 * math.fsum(s[field][i] / s["n_points"] for s in scored) / len(scored)
            per_point = 100 * sum(s[field][i] for s in scored) / points
            summary = result["metrics"][metric]
            assert math.isclose(summary["image"]["all"][alpha_key(alpha)], per_image, abs_tol=1e-9), (metric, alpha)
            assert math.isclose(summary["point"]["all"][alpha_key(alpha)], per_point, abs_tol=1e-9), (metric, alpha)
