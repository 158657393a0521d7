"""Parity of Geo-SC's objective and keypoint flip with the authors' code (Junyi42/GeoAware-SC).

tests/data/geoaware_geosc_golden.json holds what their functions give on the crafted inputs of
``tools/golden/geoaware/geosc_cases.py`` (made by ``make_geosc_loss_golden.py`` there; header: command, commit,
environment): ``calculate_loss`` with and without the flip views and the flow noise, their flip tables, and their
flip of a crafted SPair annotation. This test rebuilds the inputs and runs corrbench's code on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from corrbench.datasets.ap10k.layout import FLIP_PAIRS as AP10K_FLIP_PAIRS
from corrbench.datasets.ap10k.layout import KEYPOINT_NAMES
from corrbench.datasets.spair import SPairLayout
from corrbench.datasets.spair_flip import SPAIR_FLIP_PAIRS
from corrbench.train.data import TrainDataOptions, TrainingPairs, flip_partners, mirrored_rows
from corrbench.train.losses import GEOSC_FLIP_WEIGHTS, FlowView, geosc_loss

from repo_tools import load_tool

GOLDEN = json.loads((Path(__file__).parent / "data" / "geoaware_geosc_golden.json").read_text())
CASES = load_tool("golden/geoaware/geosc_cases.py")
#: float32 on both sides; theirs soft-argmaxes the whole 3600 x 3600 correlation, ours each keypoint's row
LOSS_RTOL = 1e-5


def our_loss(flip: bool, noise: float) -> float:
    maps = CASES.feature_maps()
    kps = CASES.keypoints().astype(np.float64)
    to_cells = CASES.GRID / CASES.CANVAS
    ids = [str(i) for i in range(30)]
    points, visible = kps[:, :, :2], kps[:, :, 2] > 0

    def cells(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(rows * to_cells).float()[None]

    views = []
    if flip:
        partners = flip_partners("spair", CASES.CATEGORY)
        # their mirror on the 840 canvas is 840 - x: mirrored_rows' width - 1 - x with width 841
        (src_flip, src_flip_vis), (trg_flip, trg_flip_vis) = (
            mirrored_rows(points[s], visible[s], ids, partners, CASES.CANVAS + 1) for s in (0, 1))
        std = [noise * t / 2 for t in CASES.THRESHOLDS]
        views = [
            FlowView(maps["src_flip"], maps["trg_flip"], cells(src_flip), cells(trg_flip),
                     torch.from_numpy(src_flip_vis & trg_flip_vis)[None], GEOSC_FLIP_WEIGHTS["pair"], std[1]),
            FlowView(maps["src_flip"], maps["src"], cells(src_flip), cells(points[0]),
                     torch.from_numpy(src_flip_vis & visible[0])[None], GEOSC_FLIP_WEIGHTS["self"], std[0]),
        ]
    result = geosc_loss(maps["src"], maps["trg"], cells(points[0]), cells(points[1]),
                        torch.tensor(math.log(1 / 0.07)), torch.from_numpy(visible[0] & visible[1])[None],
                        flow_noise_std=noise * CASES.THRESHOLDS[1] / 2,
                        generator=torch.Generator().manual_seed(CASES.NOISE_SEED), views=views)
    return float(result.total)


@pytest.mark.parametrize("case, flip, noise", [("plain", False, 0.0), ("flip", True, 0.0), ("flip_noise", True, 0.1)])
def test_geosc_loss_equals_the_authors(case, flip, noise):
    assert our_loss(flip, noise) == pytest.approx(GOLDEN["loss"][case], rel=LOSS_RTOL)


def test_flip_views_move_the_loss():
    # the golden cases differ by more than the tolerance, so a missing or mis-weighted view would fail above
    assert abs(GOLDEN["loss"]["flip"] - GOLDEN["loss"]["plain"]) > 100 * LOSS_RTOL * GOLDEN["loss"]["plain"]


def test_flip_tables_are_the_authors():
    theirs = {cat: {tuple(x) for x in entries if isinstance(x, list)} for cat, entries in GOLDEN["flip_tables"]["spair"].items()}
    assert {cat: set(pairs) for cat, pairs in SPAIR_FLIP_PAIRS.items()} == theirs
    ap10k = {tuple(KEYPOINT_NAMES[i] for i in x) for x in GOLDEN["flip_tables"]["ap10k"] if isinstance(x, list)}
    assert set(AP10K_FLIP_PAIRS) == ap10k


@pytest.fixture
def crafted_pair(tmp_path):
    for rel, content in CASES.flip_files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
        if rel.startswith("PairAnnotation"):
            (tmp_path / "Layout" / "large").mkdir(parents=True)
            (tmp_path / "Layout" / "large" / "trn.txt").write_text(Path(rel).stem + "\n")
    for name, ((w, h), _) in CASES.FLIP_IMAGES.items():
        (tmp_path / "JPEGImages" / CASES.CATEGORY).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h), (90, 120, 150)).save(tmp_path / "JPEGImages" / CASES.CATEGORY / f"{name}.jpg")
    (pair,) = SPairLayout(tmp_path).pairs("trn").pairs
    return pair


def test_flipped_spair_source_is_the_authors(crafted_pair):
    pair = crafted_pair
    ours, visible = mirrored_rows(pair.src_kps, pair.src_visible, pair.kp_ids, flip_partners("spair", pair.category),
                                  pair.src_size[0])
    theirs = np.array(GOLDEN["flip_case"])
    for row, kp_id in enumerate(pair.kp_ids):
        x, y, seen = theirs[int(kp_id)]
        if visible[row]:
            # same keypoint and visibility; theirs mirrors to W - x, corrbench to W - 1 - x (pixel centres)
            assert seen and (x - 1, y) == pytest.approx(tuple(ours[row]), abs=1e-4), kp_id
        else:  # their image file has the partner; SPair's pair file lists only mutually visible keypoints
            assert flip_partners("spair", pair.category)[kp_id] not in pair.kp_ids
    assert visible.sum() == 11 and not visible[pair.kp_ids.index("9")]


def test_training_item_carries_the_flip_views(crafted_pair):
    item = TrainingPairs([crafted_pair], TrainDataOptions(resolution=42, resize="pad", flip_dataset="spair"))[0]
    flip = item["flip"]
    assert flip["images"].shape == (2, 3, 42, 42)
    # pair view: mutual ids whose partners both images' pair rows carry (all but 9); self view: the same here
    assert flip["pair_keypoints"].shape == (2, 11, 2) and flip["self_keypoints"].shape == (2, 11, 2)
    w = crafted_pair.src_size[0]
    src = crafted_pair.src_kps[list(crafted_pair.kp_ids).index("1")]  # id 0 of the mirror lies at id 1's mirror
    expected = np.array([w - 1 - src[0], src[1]]) * (42 / w)
    np.testing.assert_allclose(flip["self_keypoints"][0, 0].numpy(), expected, atol=1e-5)
