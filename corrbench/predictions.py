"""The prediction cache of a run: one JSON line per pair, appended as batches finish.

Predictions are stored in original target-image pixels, so a run can be re-scored under any protocol
without the model, and an interrupted run resumes where it stopped. A line cut short by an interruption is
dropped (and the file truncated to the last whole line) before anything is appended.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ResultsError


class PredictionStore:
    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, np.ndarray]:
        """Every complete prediction on disk: pair id -> ``(N, 2)`` float64 array."""
        if not self.path.exists():
            return {}
        out: dict[str, np.ndarray] = {}
        good_bytes = 0
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    break  # an interrupted write: drop it
                try:
                    record = json.loads(raw)
                    points = np.asarray(record["points"], dtype=np.float64).reshape(-1, 2)
                    out[str(record["pair_id"])] = points
                except (ValueError, KeyError, TypeError) as exc:
                    raise ResultsError(
                        f"{self.path}, line {number}: not a prediction record ({exc})",
                        hint="the file was edited or corrupted; delete it to predict again",
                    ) from None
                good_bytes += len(raw)
        if good_bytes != self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(good_bytes)
        return out

    def append(self, pair_ids: Iterable[str], points: np.ndarray) -> None:
        """Append one batch (``points`` is ``(B, N, 2)``; each pair keeps its own first rows)."""
        lines = []
        for pair_id, pts in zip(pair_ids, points):
            lines.append(json.dumps({"pair_id": pair_id, "points": np.round(pts, 4).tolist()}) + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
