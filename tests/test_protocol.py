import numpy as np
import pytest

from corrbench.errors import ConfigError
from corrbench.protocol import BenchmarkSpec, Frame, Protocol
from corrbench.types import Pair


def _pair(trg_kps, bbox=(0, 0, 100, 50), size=(200, 100)):
    kps = np.asarray(trg_kps, dtype=float)
    return Pair("p", "cat", "s.jpg", "t.jpg", size, size, kps.copy(), kps, np.ones(len(kps), bool),
                np.ones(len(kps), bool), np.array(bbox, float), np.array(bbox, float))


def test_original_frame_bbox_threshold_and_comparisons():
    pair = _pair([[10.0, 10.0], [50.0, 20.0]])
    pred = np.array([[13.0, 14.0], [60.0, 20.0]])  # errors 5 and 10; T = 100
    le = Protocol(comparison="<=").score(pair, pred)
    lt = Protocol(comparison="<").score(pair, pred)
    # alphas 0.01 0.05 0.1 0.15 0.2 -> thresholds 1 5 10 15 20
    assert le.correct == (0, 1, 2, 2, 2)
    assert lt.correct == (0, 0, 1, 2, 2)


def test_square_frame_follows_marco():
    # 200 x 100 image stretched to 50 x 50: x * 50/200, y * 50/100; the box becomes 25 x 25 -> T = 25.
    frame = Frame.parse("square:50")
    np.testing.assert_allclose(frame.points(np.array([[100.0, 50.0]]), (200, 100)), [[25.0, 25.0]])
    np.testing.assert_allclose(frame.bbox(np.array([0.0, 0.0, 100.0, 50.0]), (200, 100)), [0, 0, 25, 25])
    np.testing.assert_allclose(frame.points(np.array([[0.0, 99.9]]), (200, 100), ground_truth=True),
                               [[1e-4, 49 - 1e-4]])
    pair = _pair([[100.0, 50.0]])
    # a 4-pixel horizontal error is 1 pixel in the square frame: correct at 0.05 (1.25), not at 0.01 (0.25)
    score = Protocol(frame="square:50").score(pair, np.array([[104.0, 50.0]]))
    assert score.correct == (0, 1, 1, 1, 1)
    assert Protocol(frame="original").score(pair, np.array([[104.0, 50.0]])).correct == (0, 1, 1, 1, 1)


def test_img_threshold_in_square_frame_is_the_square_side():
    pair = _pair([[100.0, 50.0]])
    score = Protocol(threshold="img", frame="square:50").score(pair, np.array([[100.0 + 4 * 2.4, 50.0]]))
    # error 2.4 px in the frame; T = 50: 0.05 * 50 = 2.5 -> correct at 0.05
    assert score.correct[1] == 1 and score.correct[0] == 0


@pytest.mark.parametrize("text", ["square", "square:", "original:12", "cube:3", "letterbox:0", "letterbox", "square:00"])
def test_bad_frames(text):
    with pytest.raises(ConfigError, match="malformed frame"):
        Frame.parse(text)


def test_protocol_validates_fields():
    with pytest.raises(ConfigError, match="threshold"):
        Protocol(threshold="box")
    with pytest.raises(ConfigError, match="comparison"):
        Protocol(comparison="=<")


def test_spec_serialises_every_protocol_field():
    spec = BenchmarkSpec("b", 3, "d", "spair", "B", "test", Protocol(frame="square:840"), adapter_options={"x": 1})
    data = spec.to_json()
    assert data["protocol"] == {"threshold": "bbox", "alphas": [0.01, 0.05, 0.1, 0.15, 0.2], "comparison": "<=",
                                "frame": "square:840", "pck_by": "image", "average": "all",
                                "arithmetic": "float64", "dagger_candidates": "target-visible", "name": "corrbench"}
    assert spec.key == "b@v3" and data["adapter_options"] == {"x": 1}


def test_letterbox_frame_follows_geoaware_sc():
    # 500 x 375 -> 840 x 630 inside 840 x 840: scale 1.68, offset_y = int((840 - 630) / 2) = 105
    frame = Frame.parse("letterbox:840")
    np.testing.assert_allclose(frame.points(np.array([[100.0, 100.0]]), (500, 375)), [[168.0, 273.0]])
    # portrait 333 x 500: new width round(559.44) = 559, offset_x = int(281 / 2) = 140
    np.testing.assert_allclose(frame.points(np.array([[0.0, 0.0]]), (333, 500)), [[140.0, 0.0]])
    pair = _pair([[10.0, 10.0]], bbox=(10.0, 20.0, 110.0, 95.0), size=(500, 375))
    assert frame.threshold("bbox", pair) == 100 * (840 / 500)  # the original side times the scale
    assert frame.threshold("img", pair) == 840.0
    # in float32, points are scaled as torch does: float32(x) * float32(scale)
    f32 = frame.points(np.array([[123.0, 77.0]]), (500, 375), dtype=np.float32)
    assert f32.dtype == np.float32 and f32[0, 0] == np.float32(123.0) * np.float32(840 / 500)


def test_align_corners_frame_clamps_ground_truth_like_the_unified_benchmark():
    frame = Frame.parse("square-align-corners:50")
    np.testing.assert_allclose(frame.points(np.array([[199.0, 0.0]]), (200, 100)), [[49.0, 0.0]])
    np.testing.assert_allclose(frame.points(np.array([[199.0, 0.0]]), (200, 100), ground_truth=True),
                               [[49 - 1e-4, 1e-4]])
    # the keypoint box (bbox-kp) spans the scaled keypoints before clamping: 0 .. 49 wide, not 1e-4 .. 49 - 1e-4
    pair = _pair([[0.0, 0.0], [199.0, 33.0]], size=(200, 100))
    assert frame.threshold("bbox-kp", pair) == 49.0


@pytest.mark.parametrize("field, value", [("arithmetic", "float16"), ("dagger_candidates", "all")])
def test_protocol_validates_new_fields(field, value):
    with pytest.raises(ConfigError, match=field):
        Protocol(**{field: value})
