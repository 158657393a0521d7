"""Tests of corrbench.metrics. Expected numbers are worked out by hand in the comments, never recomputed
with the code under test."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from corrbench.errors import ConfigError, DataError
from corrbench.metrics import (
    ALPHAS,
    PCKAccumulator,
    PairScore,
    alpha_bounds,
    alpha_key,
    nearest_is_query,
    pck_threshold,
    point_distances,
    point_errors_within,
    score_pair,
)

NAN = float("nan")


def test_alpha_keys():
    assert [alpha_key(a) for a in ALPHAS] == ["0.01", "0.05", "0.1", "0.15", "0.2"]


# ---------------------------------------------------------------- boundary


def _single(pred, gt, comparison, threshold=100.0):
    return score_pair(
        "p", "c", pred=np.array([pred], float), trg_kps=np.array([gt], float),
        src_visible=np.array([True]), trg_visible=np.array([True]),
        threshold=threshold, comparison=comparison,
    )


def test_boundary_345_inclusive_vs_strict():
    # gt (10, 20), pred (13, 24): displacement (3, 4), distance exactly 5.0.
    # threshold 100 -> bounds per alpha: 1, 5, 10, 15, 20.
    # "<=": 5 <= 1 no, 5 <= 5 yes, then yes           -> (0, 1, 1, 1, 1)
    # "<" : 5 < 1 no,  5 < 5 NO,  then yes            -> (0, 0, 1, 1, 1)
    assert _single((13, 24), (10, 20), "<=").correct == (0, 1, 1, 1, 1)
    assert _single((13, 24), (10, 20), "<").correct == (0, 0, 1, 1, 1)
    # just over: displacement (3, 4.0001) -> distance > 5 -> wrong at 0.05 under both comparisons
    assert _single((13, 24.0001), (10, 20), "<=").correct == (0, 0, 1, 1, 1)
    assert _single((13, 24.0001), (10, 20), "<").correct == (0, 0, 1, 1, 1)


def test_point_errors_within_boundary_and_shape():
    # distances 5.0 and the next double above 5.0, threshold 100, alphas (0.05, 0.1): bounds 5.0 and 10.0
    d = np.array([5.0, np.nextafter(5.0, 6.0)])
    np.testing.assert_array_equal(point_errors_within(d, 100.0, (0.05, 0.1), "<="), [[True, False], [True, True]])
    np.testing.assert_array_equal(point_errors_within(d, 100.0, (0.05, 0.1), "<"), [[False, False], [True, True]])


def test_raw_distance_compared_with_alpha_times_threshold():
    # In float64 0.15 * 6 == 0.8999999999999999 < 0.9, so distance 0.9 is NOT within under "<=",
    # although 0.9 / 6 == 0.15 would pass a ratio test. The reference codes compare the raw distance.
    assert not point_errors_within(np.array([0.9]), 6.0, (0.15,), "<=")[0, 0]
    assert point_errors_within(np.array([0.8999999999999999]), 6.0, (0.15,), "<=")[0, 0]


def test_unknown_comparison():
    with pytest.raises(ConfigError):
        point_errors_within(np.array([1.0]), 10.0, (0.1,), "<<")


# ---------------------------------------------------------------- thresholds


def test_thresholds_three_modes():
    kps = np.array([[0, 0], [30, 10], [1000, 1000], [NAN, NAN]], float)
    vis = np.array([True, True, False, False])
    common = dict(trg_size=(640, 480), trg_kps=kps, trg_visible=vis)
    # bbox [10, 20, 110, 70]: sides 100 x 50 -> 100
    assert pck_threshold("bbox", trg_bbox=np.array([10, 20, 110, 70.0]), **common) == 100.0
    # img (W=640, H=480) -> 640; also when the image is taller than wide
    assert pck_threshold("img", trg_bbox=None, **common) == 640.0
    assert pck_threshold("img", trg_bbox=None, trg_size=(300, 500), trg_kps=kps, trg_visible=vis) == 500.0
    # bbox-kp: only the visible (0,0) and (30,10) -> sides 30 x 10 -> 30 (the invisible (1000,1000) ignored)
    assert pck_threshold("bbox-kp", trg_bbox=None, **common) == 30.0


def test_threshold_errors():
    kps = np.array([[0, 0], [30, 10]], float)
    common = dict(trg_size=(640, 480), trg_kps=kps, trg_visible=np.array([True, True]))
    with pytest.raises(ConfigError, match="unknown PCK threshold mode"):
        pck_threshold("box", trg_bbox=None, **common)
    with pytest.raises(DataError, match="bounding box"):
        pck_threshold("bbox", trg_bbox=None, **common)
    with pytest.raises(DataError, match="finite and positive"):  # degenerate box: x2 < x1, y2 == y1
        pck_threshold("bbox", trg_bbox=np.array([10, 20, 5, 20.0]), **common)
    with pytest.raises(DataError, match="finite and positive"):
        pck_threshold("bbox", trg_bbox=np.array([0, 0, NAN, 10.0]), **common)
    with pytest.raises(DataError, match="visible"):
        pck_threshold("bbox-kp", trg_bbox=None, trg_size=(1, 1), trg_kps=kps, trg_visible=np.array([False, False]))
    with pytest.raises(DataError, match="finite and positive"):  # one visible keypoint spans nothing
        pck_threshold("bbox-kp", trg_bbox=None, trg_size=(1, 1), trg_kps=kps, trg_visible=np.array([True, False]))


# ---------------------------------------------------------------- aggregations


def _pair(pair_id, category, displacements, comparison):
    """A pair whose target keypoints lie 100 px apart on a line (so PCK-dagger never differs from PCK
    here) and whose predictions are displaced by the given vectors; threshold 100."""
    n = len(displacements)
    trg = np.array([[100.0 * i, 0.0] for i in range(n)])
    pred = trg + np.array(displacements, float)
    return score_pair(pair_id, category, pred=pred, trg_kps=trg, src_visible=np.ones(n, bool),
                      trg_visible=np.ones(n, bool), threshold=100.0, comparison=comparison)


def _multi_category(comparison):
    # threshold 100 -> alpha 0.05 bound = 5. (0,0) always right, (3,4)/(-4,3) at exactly 5, (0,40) wrong.
    acc = PCKAccumulator()
    acc.add(_pair("b3", "B", [(0, 0), (3, 4), (-4, 3), (0, 40), (0, -40)], comparison))
    acc.add(_pair("a1", "A", [(0, 0)], comparison))
    acc.add(_pair("a2", "A", [(0, 0), (0, 40), (0, -40)], comparison))
    return acc


def test_aggregations_inclusive():
    s = _multi_category("<=").summary()["pck"]
    # alpha 0.05: a1 1/1, a2 1/3, b3 3/5
    # image all        = (1 + 1/3 + 3/5) / 3 = (29/15) / 3 = 29/45 = 64.444...
    # image per cat    A = (1 + 1/3)/2 = 2/3 = 66.666...,  B = 3/5 = 60
    # image cat mean   = (2/3 + 3/5) / 2 = 19/30 = 63.333...
    # point all        = (1 + 1 + 3) / (1 + 3 + 5) = 5/9 = 55.555...
    # point per cat    A = 2/4 = 50,  B = 3/5 = 60;  cat mean = 55
    k = "0.05"
    assert s["image"]["all"][k] == pytest.approx(64.44444444444444, abs=1e-12)
    assert s["image"]["category_mean"][k] == pytest.approx(63.33333333333333, abs=1e-12)
    assert s["image"]["per_category"]["A"][k] == pytest.approx(66.66666666666667, abs=1e-12)
    assert s["image"]["per_category"]["B"][k] == pytest.approx(60.0, abs=1e-12)
    assert s["point"]["all"][k] == pytest.approx(55.55555555555556, abs=1e-12)
    assert s["point"]["category_mean"][k] == pytest.approx(55.0, abs=1e-12)
    assert s["point"]["per_category"]["A"][k] == pytest.approx(50.0, abs=1e-12)
    assert s["point"]["per_category"]["B"][k] == pytest.approx(60.0, abs=1e-12)
    assert list(s["image"]["per_category"]) == ["A", "B"]
    # alpha 0.01 (bound 1): a1 1, a2 1/3, b3 1/5 -> image all = (15 + 5 + 3)/15/3 = 23/45 = 51.111...
    assert s["image"]["all"]["0.01"] == pytest.approx(51.11111111111111, abs=1e-12)
    # alpha 0.2 (bound 20): same as 0.05 under "<=" (distance 40 still wrong) -> 29/45
    assert s["image"]["all"]["0.2"] == pytest.approx(64.44444444444444, abs=1e-12)


def test_aggregations_strict():
    s = _multi_category("<").summary()["pck"]
    # alpha 0.05 with "<": the two distance-5 points of b3 become wrong -> b3 1/5
    # image all      = (1 + 1/3 + 1/5) / 3 = 23/45 = 51.111...
    # image per cat  A = 2/3, B = 1/5 = 20;  cat mean = (10/15 + 3/15)/2 = 13/30 = 43.333...
    # point all      = 3/9 = 33.333...;  per cat A = 2/4 = 50, B = 1/5 = 20;  cat mean = 35
    k = "0.05"
    assert s["image"]["all"][k] == pytest.approx(51.11111111111111, abs=1e-12)
    assert s["image"]["category_mean"][k] == pytest.approx(43.33333333333333, abs=1e-12)
    assert s["image"]["per_category"]["A"][k] == pytest.approx(66.66666666666667, abs=1e-12)
    assert s["image"]["per_category"]["B"][k] == pytest.approx(20.0, abs=1e-12)
    assert s["point"]["all"][k] == pytest.approx(33.33333333333333, abs=1e-12)
    assert s["point"]["category_mean"][k] == pytest.approx(35.0, abs=1e-12)
    assert s["point"]["per_category"]["A"][k] == pytest.approx(50.0, abs=1e-12)
    assert s["point"]["per_category"]["B"][k] == pytest.approx(20.0, abs=1e-12)
    # alpha 0.1 (bound 10): distance 5 is right under "<" too -> back to 29/45
    assert s["image"]["all"]["0.1"] == pytest.approx(64.44444444444444, abs=1e-12)


def test_summary_types_and_counts():
    summary = _multi_category("<=").summary()
    assert summary["counts"] == {"pairs": 3, "points": 9, "categories": 2, "skipped": {"no valid keypoint": 0}}
    for metric in ("pck", "pck_dagger"):
        for per in ("image", "point"):
            assert set(summary[metric][per]) == {"all", "category_mean", "per_category"}
            assert list(summary[metric][per]["all"]) == ["0.01", "0.05", "0.1", "0.15", "0.2"]
            assert all(type(v) is float for v in summary[metric][per]["all"].values())
    # keypoints 100 px apart and all errors <= 40: nearest is always the query -> dagger == pck
    assert summary["pck_dagger"] == summary["pck"]


# ---------------------------------------------------------------- PCK-dagger


def test_dagger_neighbour_and_tie():
    # target keypoints: row0 (0,0), row1 (10,0). threshold 100, alpha 0.1 -> bound 10.
    trg = np.array([[0, 0], [10, 0]], float)
    vis = np.array([True, True])

    def score(pred0):
        pred = np.array([pred0, (10, 0)], float)  # row 1 predicted exactly
        return score_pair("p", "c", pred=pred, trg_kps=trg, src_visible=vis, trg_visible=vis,
                          threshold=100.0, alphas=(0.1,))

    # pred0 (6,0): 6 from own gt (<= 10, PCK right) but 4 from row1 -> dagger wrong. Row1 right in both.
    s = score((6, 0))
    assert (s.correct, s.correct_dagger) == ((2,), (1,))
    # pred0 (5,0): 5 from both -> tie counts for the query -> dagger right
    s = score((5, 0))
    assert (s.correct, s.correct_dagger) == ((2,), (2,))


def test_nearest_is_query_direct():
    cands = np.array([[0, 0], [10, 0], [0, 10]], float)
    pred = np.array([[5, 0], [5, 0], [6, 0], [0, 4], [NAN, 0]], float)
    rows = np.array([0, 1, 0, 2, 0])
    # (5,0): 5 to row0, 5 to row1 (tie) -> True for both queries; (6,0) -> row1 nearer -> False;
    # (0,4): 4 to row0, 6 to row2 -> False for query 2; NaN -> False
    np.testing.assert_array_equal(nearest_is_query(pred, cands, rows), [True, True, False, False, False])


def test_dagger_candidates_are_target_visible_rows():
    # row0 queried at (0,0); row1 (10,0) visible only in the target (not scored, but a candidate);
    # row2 invisible in the target (NaN, not a candidate) although it would lie at the prediction.
    trg = np.array([[0, 0], [10, 0], [NAN, NAN]])
    pred = np.array([[6, 0], [NAN, NAN], [123, 456]])
    s = score_pair("p", "c", pred=pred, trg_kps=trg, src_visible=np.array([True, False, True]),
                   trg_visible=np.array([True, True, False]), threshold=100.0, alphas=(0.1,))
    # one scored point; 6 <= 10 -> PCK right; nearer to row1 (4 < 6) -> dagger wrong
    assert (s.n_points, s.correct, s.correct_dagger) == (1, (1,), (0,))


# ---------------------------------------------------------------- skipped, NaN, empty


def test_nan_prediction_counted_wrong():
    trg = np.array([[0, 0], [50, 0], [100, 0]], float)
    pred = np.array([[0, 0], [NAN, 3], [np.inf, 0]])
    vis = np.ones(3, bool)
    s = score_pair("p", "c", pred=pred, trg_kps=trg, src_visible=vis, trg_visible=vis, threshold=100.0)
    # row0 exact (right at every alpha), row1 NaN and row2 inf wrong -> 1 of 3 everywhere
    assert s.n_points == 3 and s.correct == (1,) * 5 and s.correct_dagger == (1,) * 5
    acc = PCKAccumulator()
    acc.add(s)
    # 1/3 -> 33.333...
    assert acc.summary()["pck"]["image"]["all"]["0.1"] == pytest.approx(33.33333333333333, abs=1e-12)


def test_skipped_pairs_never_nan():
    acc = PCKAccumulator(alphas=(0.1,))
    vis = np.array([True, False])
    # "c0": keypoint 0 visible only in the source, 1 only in the target -> nothing scored
    skipped = score_pair("c0", "C", pred=np.full((2, 2), NAN), trg_kps=np.array([[NAN, NAN], [1, 1]]),
                         src_visible=vis, trg_visible=~vis, threshold=10.0, alphas=(0.1,))
    assert (skipped.n_points, skipped.correct, skipped.correct_dagger) == (0, (0,), (0,))
    acc.add(skipped)
    acc.add(PairScore("a0", "A", 4, (1,), (1,)))  # 25 %
    acc.add(PairScore("b0", "B", 2, (2,), (2,)))  # 100 %
    s = acc.summary()
    assert s["counts"] == {"pairs": 2, "points": 6, "categories": 2, "skipped": {"no valid keypoint": 1}}
    assert len(acc) == 3
    # image all = (1/4 + 1) / 2 = 62.5; point all = 3/6 = 50; category C absent; cat mean over A, B only
    assert s["pck"]["image"]["all"] == {"0.1": 62.5}
    assert s["pck"]["point"]["all"] == {"0.1": 50.0}
    assert s["pck"]["image"]["category_mean"] == {"0.1": 62.5}
    assert s["pck"]["point"]["category_mean"] == {"0.1": 62.5}  # (25 + 100)/2
    assert set(s["pck"]["image"]["per_category"]) == {"A", "B"}
    assert set(s["pck_dagger"]["point"]["per_category"]) == {"A", "B"}


@pytest.mark.parametrize("with_skipped", [False, True])
def test_nothing_scored_gives_none(with_skipped):
    acc = PCKAccumulator()
    if with_skipped:
        acc.add(PairScore("x", "C", 0, (0,) * 5, (0,) * 5))
    s = acc.summary()
    for metric in ("pck", "pck_dagger"):
        for per in ("image", "point"):
            assert s[metric][per]["all"] == {k: None for k in ("0.01", "0.05", "0.1", "0.15", "0.2")}
            assert s[metric][per]["category_mean"] == {k: None for k in ("0.01", "0.05", "0.1", "0.15", "0.2")}
            assert s[metric][per]["per_category"] == {}
    assert s["counts"] == {"pairs": 0, "points": 0, "categories": 0,
                           "skipped": {"no valid keypoint": 1 if with_skipped else 0}}


def test_nonfinite_visible_ground_truth_is_data_error():
    vis = np.array([True])
    with pytest.raises(DataError):
        score_pair("p", "c", pred=np.zeros((1, 2)), trg_kps=np.array([[NAN, 0.0]]),
                   src_visible=vis, trg_visible=vis, threshold=10.0)


# ---------------------------------------------------------------- merge, duplicates, determinism


def _random_scores(n=60, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        n_points = rng.choice([0, 1, 3, 7, 11, 13])
        correct = sorted(rng.randint(0, n_points) for _ in ALPHAS)
        dagger = tuple(rng.randint(0, c) for c in correct)
        out.append(PairScore(f"pair{i:03d}", rng.choice("ABCDE"), n_points, tuple(correct), dagger))
    return out


def test_shard_and_merge_is_bit_identical():
    scores = _random_scores()
    whole = PCKAccumulator()
    for s in scores:
        whole.add(s)
    reference = whole.summary()
    assert reference["counts"]["skipped"]["no valid keypoint"] > 0  # the fixture exercises skipping
    for seed in range(20):
        rng = random.Random(seed)
        shuffled = scores[:]
        rng.shuffle(shuffled)
        cuts = sorted(rng.sample(range(1, len(shuffled)), 3))
        shards = []
        for lo, hi in zip([0] + cuts, cuts + [len(shuffled)]):
            acc = PCKAccumulator()
            for s in shuffled[lo:hi]:
                acc.add(s)
            shards.append(acc)
        rng.shuffle(shards)
        merged = shards[0]
        for other in shards[1:]:
            merged = merged.merge(other) if rng.random() < 0.5 else other.merge(merged)
        assert merged.summary() == reference  # exact, not approx
        assert merged.scores == whole.scores
    assert [s.pair_id for s in whole.scores] == sorted(s.pair_id for s in scores)


def test_merge_does_not_modify_inputs():
    a, b = PCKAccumulator(), PCKAccumulator()
    a.add(PairScore("x", "A", 1, (1,) * 5, (1,) * 5))
    b.add(PairScore("y", "A", 1, (0,) * 5, (0,) * 5))
    m = a.merge(b)
    assert (len(a), len(b), len(m)) == (1, 1, 2)


def test_duplicates_and_mismatches_raise():
    acc = PCKAccumulator()
    acc.add(PairScore("dup", "A", 1, (1,) * 5, (1,) * 5))
    with pytest.raises(ValueError, match="dup"):
        acc.add(PairScore("dup", "B", 2, (0,) * 5, (0,) * 5))
    other = PCKAccumulator()
    other.add(PairScore("dup", "A", 1, (1,) * 5, (1,) * 5))
    with pytest.raises(ValueError, match="dup"):
        acc.merge(other)
    with pytest.raises(ValueError, match="alphas"):
        acc.add(PairScore("z", "A", 1, (1,), (1,)))
    with pytest.raises(ValueError, match="alphas"):
        acc.merge(PCKAccumulator(alphas=(0.1,)))


# ---------------------------------------------------------------- PairScore


def test_pair_score_json_round_trip():
    s = PairScore("spair/0001:aero", "aeroplane", 7, (0, 3, 5, 6, 7), (0, 2, 4, 6, 6))
    d = json.loads(json.dumps(s.to_json()))
    assert d == {"pair_id": "spair/0001:aero", "category": "aeroplane", "n_points": 7,
                 "correct": [0, 3, 5, 6, 7], "correct_dagger": [0, 2, 4, 6, 6]}
    back = PairScore.from_json(d)
    assert back == s and isinstance(back.correct, tuple) and isinstance(back.correct_dagger, tuple)


def test_pair_score_rejects_inconsistent_counts():
    with pytest.raises(ValueError):
        PairScore("p", "c", 2, (3,), (0,))  # more correct than points
    with pytest.raises(ValueError):
        PairScore("p", "c", 2, (1,), (2,))  # dagger-correct must be PCK-correct


# ---------------------------------------------------------------- arithmetic (GeoAware-SC / Jamais Vu float32)


def test_float32_alphas_decide_ties_as_geoaware_sc_does():
    # distances exactly at alpha x T for T = 100: float32(0.01) < 0.01, float32(0.05) > 0.05, float32(0.1) > 0.1
    d = np.array([1.0, 5.0, 10.0])
    theirs = point_errors_within(d, 100.0, (0.01, 0.05, 0.1), "<", arithmetic="torch-float32")
    np.testing.assert_array_equal(np.diag(theirs), [False, True, True])
    assert not np.diag(point_errors_within(d, 100.0, (0.01, 0.05, 0.1), "<")).any()  # float64: all ties lost
    assert np.diag(point_errors_within(d, 100.0, (0.01, 0.05, 0.1), "<=")).all()


def test_float32_image_threshold_product_is_float32():
    # GeoAware-SC's `alpha * args.ANNO_SIZE`: float32(0.05) * 840 and float32(0.1) * 840 round to 42 and 84
    # exactly; float32(0.15) * 840 = 126.0000050... rounds up to 126 + 2**-17
    bounds = alpha_bounds((0.05, 0.1, 0.15), 840.0, "torch-float32", threshold_mode="img")
    assert bounds.tolist() == [42.0, 84.0, 126.0 + 2.0**-17]
    box = alpha_bounds((0.05, 0.1), 840.0, "torch-float32", threshold_mode="bbox")
    assert box[0] > 42.0 and box[1] > 84.0  # float64 product of the float32 alphas


def test_float32_distances_equal_torch_norm():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(20000, 2, generator=generator) * 900
    b = a + (torch.rand(20000, 2, generator=generator) - 0.5) * 200
    # GeoAware-SC: (gt[:, [1, 0]] - pred[:, [1, 0]]).norm(dim=-1) on float32 tensors
    expected = (a[:, [1, 0]] - b[:, [1, 0]]).norm(dim=-1).numpy().astype(np.float64)
    got = point_distances(b.numpy().astype(np.float64), a.numpy().astype(np.float64), "torch-float32")
    np.testing.assert_array_equal(got, expected)


def test_unknown_arithmetic_is_a_config_error():
    with pytest.raises(ConfigError, match="arithmetic"):
        point_distances(np.zeros((1, 2)), np.zeros((1, 2)), "float16")


# ---------------------------------------------------------------- PCK-dagger candidates


def test_dagger_candidates_target_visible_or_both_visible():
    # row 1 is visible in the target only and lies 1 px from the prediction for row 0 (3 px from its own)
    trg = np.array([[10.0, 10.0], [14.0, 10.0]])
    pred = np.array([[13.0, 10.0], [0.0, 0.0]])
    kwargs = dict(pred=pred, trg_kps=trg, src_visible=np.array([True, False]), trg_visible=np.array([True, True]),
                  threshold=100.0)
    ours = score_pair("p", "c", **kwargs)
    jamais_vu = score_pair("p", "c", dagger_candidates="both-visible", **kwargs)
    assert ours.n_points == jamais_vu.n_points == 1 and ours.correct[1] == jamais_vu.correct[1] == 1
    assert ours.correct_dagger[1] == 0 and jamais_vu.correct_dagger[1] == 1
    with pytest.raises(ConfigError, match="PCK-dagger candidate rule"):
        score_pair("p", "c", dagger_candidates="all", **kwargs)
