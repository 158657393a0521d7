"""A test-only matcher with a known error: the ground truth moved by ``(dx, dy)`` pixels.

Every queried point is then exactly ``hypot(dx, dy)`` pixels off, so the PCK of any fixture can be worked out
by hand from its thresholds. Use it as ``--method <OFFSET_MATCHER>`` (a file reference) with ``dx``/``dy``
options; the defaults (3, 4) put every point 5 pixels away.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from corrbench.matcher import Matcher
from corrbench.types import MatchOutput, PairBatch


class OffsetMatcher(Matcher):
    description = "Test-only: ground truth plus a fixed offset"
    uses_ground_truth = True

    @dataclasses.dataclass
    class Config:
        dx: float = 3.0
        dy: float = 4.0

    def match(self, batch: PairBatch) -> MatchOutput:
        offset = torch.tensor([self.config.dx, self.config.dy], dtype=batch.ground_truth.dtype)
        return MatchOutput(points=batch.ground_truth + offset.to(batch.ground_truth.device))


OFFSET_MATCHER = f"{Path(__file__).resolve()}:OffsetMatcher"
