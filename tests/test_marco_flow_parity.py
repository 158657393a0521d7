"""corrbench's MARCO training losses and flow-anchoring stages equal the authors' code: golden outputs of visinf/MARCO.

``tests/data/marco_official_flow.npz`` was written by the authors' functions (visinf/MARCO commit 1ec16b93:
``util/losses.py``, ``util/flow.py``, ``util/geometry.py``, ``util/ema.py``; torch 2.13.0+cpu, torch_kmeans 0.2.0,
scipy 1.17.1) on the crafted inputs of ``tools/golden/golden_cases.py``, which this test rebuilds;
``tools/golden/make_marco_flow_golden.py`` (its docstring gives the environment and every array) rewrites the
file byte for byte. Each stage is fed the authors' output of the stage before it where the file has it (grid
flow, colours, cluster labels), so a difference points at one stage; the whole chain is checked as well.

What is compared, and the tolerances (absolute unless said otherwise):

- coarse-to-fine CE (``CoarseToFineLoss`` with fixed sigmas 3.5 / 2 / 1, float64): per keypoint and per batch
  with the visibility mask, relative 1e-6 (the authors build their Gaussian window in float32: 4e-8 relative
  on the machine that wrote the file); the gradient against their float32 copy, 1e-6;
- the released sigma schedule and the EMA momentum ramp: 1e-12;
- the flow-anchoring loss on int32 mined targets (their truncation of the targets included), relative 1e-9;
  gradient 1e-6;
- mining on a crafted 64 px pair (16 x 16 grid, four motions, a hole in the features that a GT seed fills, a
  GT pair annotated off the flow, so 4 of 7 clusters are kept): grid masks, cluster labels, the kept clusters
  and the collected matches exactly; the grid flow 1e-4 cells (float32 least squares per triangle there,
  closed-form float64 here); the valid pixels and 8-bit colours exactly;
- the released ratio test where it decides (a mutual match dropped; the fallback to plain mutual matches):
  the resulting grid flow, 1e-4 cells;
- k-means + BIC merging on 90 colour points (few enough that BIC merges): labels exactly;
- the anchoring rule on a crafted two-cluster flow where its 10 px radius and its ``>= 50%`` decide: the kept
  clusters exactly.

On the machine that wrote the file: grid flows differ by at most 1.5e-6 cells, the coarse-to-fine CE by 3e-8
relative, its gradient by 5e-10, the flow-anchoring loss by 2e-16 relative; everything compared exactly is equal.
Each test was checked to fail when the corrbench function it covers is perturbed (ratio test, fallback, mask
resampling, keypoint seeds, flow, upsampling, colour scale, k-means seed and tolerance, BIC penalty, anchoring
radius and threshold, target-mask check, CE epsilon / window / border rule, sigma and momentum schedules, loss
target truncation and temperature).

Not compared: the engine's final ``np.random.choice`` of 300 matches (corrbench draws with a seeded torch
generator on purpose; ``mine_matches`` is run here with more samples than matches, so nothing is dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from corrbench.geometry import pixels_to_cells
from corrbench.methods.marco.anchoring import anchored_clusters, collect_matches
from corrbench.methods.marco.clustering import cluster_flow, flow_colour_features
from corrbench.methods.marco.flow import add_keypoint_seeds, piecewise_affine_flow, upsample_flow
from corrbench.methods.marco.flow_anchoring import FlowAnchoringConfig, flow_anchoring_loss, mine_matches
from corrbench.methods.marco.losses import CoarseToFineLoss
from corrbench.methods.marco.matcher import CELL_RULE
from corrbench.methods.marco.mining import grid_mutual_matches, masks_to_feature_grid
from corrbench.methods.marco.schedules import fixed_sigma, released_momentum_schedule

from repo_tools import load_tool

GOLDEN = Path(__file__).parent / "data" / "marco_official_flow.npz"
CASES = load_tool("golden/golden_cases.py")
LOSS_CANVAS = (48, 48)
FLOW_CELLS = 1e-4


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def pair():
    return CASES.marco_flow_pair()


@pytest.mark.parametrize("sigma", [3.5, 2.0, 1.0])
def test_coarse_to_fine_ce_equals_the_released_loss(golden, sigma):
    case = CASES.marco_loss_case()
    loss = CoarseToFineLoss(fixed_sigma(sigma))
    similarity = case["similarity"].clone().requires_grad_(True)
    per_keypoint = loss(similarity, case["targets"], LOSS_CANVAS, 0, reduction="none")
    batch = loss(similarity, case["targets"], LOSS_CANVAS, 0, case["visible"], reduction="sum")
    tag = f"c2f_sigma{sigma:g}"
    np.testing.assert_allclose(per_keypoint.detach().numpy(), golden[f"{tag}_per_keypoint"], rtol=1e-6)
    np.testing.assert_allclose(batch.item(), golden[f"{tag}_batch"], rtol=1e-6)
    if f"{tag}_grad" in golden:
        batch.backward()
        np.testing.assert_allclose(similarity.grad.float().numpy(), golden[f"{tag}_grad"], rtol=0, atol=1e-6)


def test_released_sigma_schedule_and_momentum_ramp_equal_the_authors(golden):
    sigma = CoarseToFineLoss().sigma
    np.testing.assert_allclose([sigma(int(i)) for i in golden["sigma_iterations"]], golden["sigma_values"],
                               rtol=0, atol=1e-12)
    momentum = released_momentum_schedule(100)
    np.testing.assert_allclose([momentum(int(s)) for s in golden["ema_steps"]], golden["ema_values"],
                               rtol=0, atol=1e-12)


def test_flow_anchoring_loss_equals_the_released_soft_argmax_l2(golden):
    case = CASES.marco_loss_case()
    scores = case["mined_scores"].clone().requires_grad_(True)
    loss = flow_anchoring_loss(scores, case["mined_targets"][0], LOSS_CANVAS, temperature=10.0, num_points=1)
    np.testing.assert_allclose(loss.item(), golden["dense_loss"], rtol=1e-9)
    loss.backward()
    np.testing.assert_allclose(scores.grad.float().numpy(), golden["dense_grad"], rtol=0, atol=1e-6)


def test_grid_flow_from_mutual_matches_and_keypoint_seeds_equals_the_authors(golden, pair):
    grid_masks = masks_to_feature_grid(pair["masks"], (CASES.FLOW_GRID, CASES.FLOW_GRID))
    assert torch.equal(grid_masks, torch.from_numpy(golden["pair_grid_masks"]))
    features = pair["features"]
    src, trg, _ = grid_mutual_matches(features[0], features[1], grid_masks[0], grid_masks[1])
    grid, canvas = (CASES.FLOW_GRID,) * 2, (CASES.FLOW_CANVAS,) * 2
    kp_cells = pixels_to_cells(pair["keypoints"], canvas, grid, rule=CELL_RULE)
    src, trg, _ = add_keypoint_seeds(src, trg, kp_cells[0], kp_cells[1], grid_masks[0], grid_masks[1])
    flow = piecewise_affine_flow(src, trg, grid_masks[0]).flow
    np.testing.assert_allclose(flow.numpy(), golden["pair_flow_grid"], rtol=0, atol=FLOW_CELLS)


def test_colours_clusters_anchoring_and_matches_equal_the_authors_stage_by_stage(golden, pair):
    masks, keypoints = pair["masks"], pair["keypoints"]
    flow_px = upsample_flow(torch.from_numpy(golden["pair_flow_grid"]), (CASES.FLOW_CANVAS, CASES.FLOW_CANVAS))
    colours, valid = flow_colour_features(flow_px, masks[0])
    assert torch.equal(valid, torch.from_numpy(golden["pair_valid"]))
    assert torch.equal(torch.round(colours * 255).to(torch.uint8), torch.from_numpy(golden["pair_colours"]))

    labels = cluster_flow(torch.from_numpy(golden["pair_colours"]).float() / 255.0)
    assert labels.tolist() == golden["pair_labels"].tolist()

    keep, _ = anchored_clusters(flow_px, valid, labels, keypoints[0], keypoints[1], int(labels.max()) + 1)
    kept = torch.nonzero(keep).flatten().tolist()
    assert kept == golden["pair_kept"].tolist() and 0 < len(kept) < int(labels.max()) + 1  # the case drops some
    source, target = collect_matches(flow_px, valid, labels, keep, masks[1])
    assert torch.equal(torch.stack((source, target)).to(torch.int16), torch.from_numpy(golden["pair_matches"]))


def test_the_mining_chain_collects_the_authors_matches(golden, pair):
    mined = mine_matches(pair["features"], pair["masks"], pair["keypoints"],
                         FlowAnchoringConfig(min_matches=1, num_samples=10**6))
    ours = sorted(map(tuple, torch.cat((mined.source, mined.target), dim=1).long().tolist()))
    theirs = sorted(map(tuple, np.concatenate(golden["pair_matches"], axis=1).tolist()))
    assert mined.skipped is None and ours == theirs


@pytest.mark.parametrize("case", list(CASES.RATIO_CASES))
def test_released_ratio_test_and_its_fallback_equal_the_authors(golden, case):
    inputs = CASES.marco_ratio_pair(case)
    features, masks = inputs["features"], inputs["masks"]
    src, trg, found = grid_mutual_matches(features[0], features[1], masks[0], masks[1])
    if case == "drops_one":  # the case is what it says: the test decides
        assert found.num_ratio_kept == found.num_mutual - 1 >= 3 and not found.used_fallback
    else:
        assert found.num_ratio_kept < 3 and found.used_fallback
    flow = piecewise_affine_flow(src, trg, masks[0]).flow
    np.testing.assert_allclose(flow.numpy(), golden[f"ratio_{case}_flow"], rtol=0, atol=FLOW_CELLS)


def test_kmeans_and_bic_merging_equal_the_authors(golden):
    labels = cluster_flow(CASES.marco_colour_points(), k_init=7, k_min=3)
    assert labels.tolist() == golden["bic_labels"].tolist()
    assert 3 <= len(set(labels.tolist())) < 7  # BIC merged some of k-means' clusters


def test_anchoring_radius_and_threshold_equal_the_authors(golden):
    case = CASES.marco_anchoring_case()
    keep, fraction = anchored_clusters(case["flow"], case["valid"], case["labels"], case["keypoints"][0],
                                       case["keypoints"][1])
    assert torch.nonzero(keep).flatten().tolist() == golden["anchor_kept"].tolist() == [0, 1]
    assert fraction.tolist() == [0.5, 2 / 3]  # the left cluster is kept on the threshold itself
