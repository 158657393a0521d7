"""`corrbench match` on two images of your own: printed points, JSON, and a picture."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from corrbench.cli import cli
from corrbench.errors import ConfigError
from corrbench.match_images import parse_points, read_points_file
from corrbench.visualize import draw_correspondences


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    src, trg = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(src)
    Image.fromarray(rng.integers(0, 255, (90, 50, 3), dtype=np.uint8)).save(trg)
    return src, trg


def _invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_match_prints_json_and_writes_a_picture(images, tmp_path):
    src, trg = images
    out = tmp_path / "vis.png"
    result = _invoke("match", "-m", "tiny-vit", "--src", str(src), "--trg", str(trg), "--points", "10,20 70.5,3",
                     "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["src_points"] == [[10.0, 20.0], [70.5, 3.0]]
    pts = np.array(data["trg_points"])
    assert pts.shape == (2, 2) and (pts >= -0.5).all() and (pts[:, 0] <= 49.5).all() and (pts[:, 1] <= 89.5).all()
    with Image.open(out) as picture:
        assert picture.height >= 360 and picture.width > picture.height


def test_match_reads_a_points_file_and_prints_a_table(images, tmp_path):
    src, trg = images
    path = tmp_path / "pts.json"
    path.write_text(json.dumps({"points": [[1, 2], [3, 4], [5, 6]]}))
    result = _invoke("match", "-m", "random", "--src", str(src), "--trg", str(trg), "--points-file", str(path))
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["0", "1", "2"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--points", "1,2 3"], "malformed point"),
        (["--points", "500,2"], "outside the source image"),
        ([], "exactly one of --points and --points-file"),
        (["--points", "1,2", "--set", "nope=1"], "no option 'nope'"),
    ],
)
def test_match_errors(images, extra, message):
    src, trg = images
    result = _invoke("match", "-m", "random", "--src", str(src), "--trg", str(trg), *extra)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_oracle_cannot_match_unannotated_images(images):
    src, trg = images
    result = _invoke("match", "-m", "oracle", "--src", str(src), "--trg", str(trg), "--points", "1,1")
    assert result.exit_code == 3 and "only the benchmark harness supplies" in result.output


def test_point_parsing():
    np.testing.assert_array_equal(parse_points("1,2;3.5,-0.5"), [[1, 2], [3.5, -0.5]])
    with pytest.raises(ConfigError):
        parse_points("  ")


def test_points_file_errors(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"points": [1, 2]}')
    with pytest.raises(ConfigError, match="field 'points'"):
        read_points_file(path)


def test_picture_marks_correct_and_wrong_predictions():
    src = Image.new("RGB", (100, 100), (0, 0, 0))
    trg = Image.new("RGB", (100, 100), (0, 0, 0))
    pts = np.array([[10.0, 10.0], [80.0, 80.0]])
    picture = draw_correspondences(src, trg, pts, pts, trg_truth=pts, correct=[True, False])
    pixels = np.asarray(picture)
    green = ((pixels[..., 1] > 200) & (pixels[..., 0] < 80)).sum()
    red = ((pixels[..., 0] > 220) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)).sum()
    assert green > 10 and red > 10


def test_match_with_a_random_dinov2_backbone(images, tmp_path):
    src, trg = images
    result = _invoke("match", "-m", "dinov2-vits14", "--set", "weights=random", "--set", "resolution=56",
                     "--src", str(src), "--trg", str(trg), "--points", "10,20 40,30", "--json")
    assert result.exit_code == 0, result.output
    assert np.array(json.loads(result.output)["trg_points"]).shape == (2, 2)
