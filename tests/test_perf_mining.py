"""The loop implementation the mining perf script measures against gives corrbench's matches exactly."""

from __future__ import annotations

import pytest
import torch

from corrbench.perf.mining_loops import loop_dense_flow, loop_mine_matches
from corrbench.perf.mining_pair import make_mining_pair
from corrbench.methods.marco.flow import piecewise_affine_flow
from corrbench.methods.marco.flow_anchoring import mine_matches


@pytest.fixture(scope="module")
def pair():
    return make_mining_pair(image=140, grid=40, channels=64, keypoints=10, seed=1)


def test_the_loop_chain_mines_the_same_matches(pair):
    features, masks, keypoints = pair
    fast = mine_matches(features, masks, keypoints, seed=3)
    slow = loop_mine_matches(features, masks, keypoints, seed=3)
    assert fast.skipped is None and slow.skipped is None
    assert slow.counts["matches"] == fast.counts["matches"] >= 100
    assert torch.equal(slow.source, fast.source) and torch.equal(slow.target, fast.target)
    assert set(slow.timings_ms) == {"mutual_matches", "dense_flow", "clustering", "anchoring_and_sampling"}


def test_the_per_triangle_flow_equals_the_batched_one():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(40, 2, generator=g) * 30
    trg = src @ torch.tensor([[0.9, 0.2], [-0.1, 1.1]]) + 3 + torch.rand(40, 2, generator=g)
    mask = torch.rand(32, 32, generator=g) > 0.2
    assert torch.equal(loop_dense_flow(src, trg, mask), piecewise_affine_flow(src, trg, mask).flow)
