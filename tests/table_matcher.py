"""A test-only matcher that answers with predictions read from a JSON table (original target pixels).

The table is ``{"pairs": [{"stem": pair id, "predictions": [[x, y], ...]}, ...]}`` (as in
``tests/data/geoaware_pck_golden.json``): it lets a whole ``corrbench run`` score exactly the predictions
another codebase was given.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from corrbench.matcher import Matcher
from corrbench.types import MatchOutput, PairBatch


class TableMatcher(Matcher):
    description = "Test-only: predictions read from a JSON table"

    @dataclasses.dataclass
    class Config:
        table: str = ""

    def match(self, batch: PairBatch) -> MatchOutput:
        table = {p["stem"]: p["predictions"] for p in json.loads(Path(self.config.table).read_text())["pairs"]}
        points = torch.zeros(batch.size, batch.max_keypoints, 2)
        for b, pair_id in enumerate(batch.pair_ids):
            rows = torch.tensor(table[pair_id], dtype=torch.float32)
            points[b, : rows.shape[0]] = rows
        return MatchOutput(points=points)


TABLE_MATCHER = f"{Path(__file__).resolve()}:TableMatcher"
