"""``oracle``: answers with the ground truth. A test of the harness and metrics, never a method.

It declares ``uses_ground_truth = True``, the one documented hook through which the harness adds the target
keypoints to a batch; every result it produces records ``method.uses_ground_truth: true``.
"""

from __future__ import annotations

import dataclasses

from corrbench.errors import MatcherContractError
from corrbench.matcher import Matcher
from corrbench.types import MatchOutput, PairBatch


class OracleMatcher(Matcher):
    description = "Test-only: returns the annotated target keypoints (scores 100 by construction)"
    uses_ground_truth = True

    @dataclasses.dataclass
    class Config:
        pass

    def match(self, batch: PairBatch) -> MatchOutput:
        if batch.ground_truth is None:
            raise MatcherContractError(
                "oracle needs the target keypoints, which only the benchmark harness supplies",
                hint="use it with `corrbench run`, not on images without annotations",
            )
        return MatchOutput(points=batch.ground_truth.clone())
