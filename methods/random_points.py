"""``random``: a uniformly random point in the target image for every query: the floor of any table."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import torch

from corrbench.config import option
from corrbench.matcher import Matcher
from corrbench.types import MatchOutput, PairBatch


class RandomMatcher(Matcher):
    description = "Uniformly random target points (chance level); deterministic per pair and seed"

    @dataclasses.dataclass
    class Config:
        seed: int = option(0, "seed of the random points (combined with each pair's id)")

    def match(self, batch: PairBatch) -> MatchOutput:
        points = torch.empty(batch.size, batch.max_keypoints, 2, dtype=torch.float32)
        for b, (pair_id, (width, height)) in enumerate(zip(batch.pair_ids, batch.trg_sizes)):
            # Seeded by the pair, not the batch, so answers do not depend on batch size or order.
            rng = np.random.default_rng([self.config.seed, zlib.crc32(pair_id.encode())])
            xy = rng.uniform((-0.5, -0.5), (width - 0.5, height - 0.5), size=(batch.max_keypoints, 2))
            points[b] = torch.from_numpy(xy)
        return MatchOutput(points=points.to(batch.src_kps.device))
