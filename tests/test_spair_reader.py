"""The SPair-71k layout reader on a tiny hand-written dataset in the official layout."""

import json

import numpy as np
import pytest
from PIL import Image

from corrbench.errors import DataError
from corrbench.datasets.spair import SPairLayout


def _write_pair(root, split, stem, **overrides):
    data = {
        "pair_id": 1, "src_imname": "a.jpg", "trg_imname": "b.jpg",
        "src_imsize": [40, 30, 3], "trg_imsize": [50, 20, 3],
        "src_bndbox": [1, 2, 30, 25], "trg_bndbox": [0, 0, 49, 19],
        "src_pose": "Frontal", "trg_pose": "Left",
        "src_kps": [[3, 4], [10, 12]], "trg_kps": [[5, 6], [40, 15]], "kps_ids": ["0", "7"],
        "category": "cat", "mirror": 0, "viewpoint_variation": 1, "scale_variation": 0,
        "truncation": 0, "occlusion": 2,
    }
    data.update(overrides)
    path = root / "PairAnnotation" / split / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture
def spair_root(tmp_path):
    root = tmp_path / "SPair-71k"
    (root / "Layout" / "large").mkdir(parents=True)
    for category in ("cat", "dog"):
        (root / "JPEGImages" / category).mkdir(parents=True)
        Image.new("RGB", (40, 30)).save(root / "JPEGImages" / category / "a.jpg")
        Image.new("RGB", (50, 20)).save(root / "JPEGImages" / category / "b.jpg")
    stems = ["000001-a-b:cat", "000002-a-b:cat", "000003-a-b:cat", "000004-a-b:dog"]
    (root / "Layout" / "large" / "test.txt").write_text("\n".join(stems) + "\n")
    _write_pair(root, "test", stems[0])
    (root / "PairAnnotation" / "test" / f"{stems[1]}.json").write_text("{not json")
    _write_pair(root, "test", stems[2], trg_kps=[[1, 1]])
    _write_pair(root, "test", stems[3], category="dog")
    return root


def test_reads_pairs_and_reports_malformed_ones(spair_root):
    adapter = SPairLayout(spair_root)
    assert adapter.is_available()
    result = adapter.pairs("test")
    assert [p.pair_id for p in result.pairs] == ["000001-a-b:cat", "000004-a-b:dog"]
    pair = result.pairs[0]
    assert pair.src_size == (40, 30) and pair.trg_size == (50, 20)
    np.testing.assert_array_equal(pair.trg_kps, [[5, 6], [40, 15]])
    np.testing.assert_array_equal(pair.trg_bbox, [0, 0, 49, 19])
    assert pair.kp_ids == ("0", "7") and pair.valid.all()
    assert pair.src_image == spair_root / "JPEGImages" / "cat" / "a.jpg"
    assert pair.meta["occlusion"] == 2 and pair.meta["viewpoint_variation"] == 1
    reasons = {s.name: (s.reason, s.detail) for s in result.skipped}
    assert reasons["000002-a-b:cat"][0] == "malformed pair file" and "JSON" in reasons["000002-a-b:cat"][1]
    assert "2 points but trg_kps has 1" in reasons["000003-a-b:cat"][1]


def test_subset_selects_categories(spair_root):
    assert [p.category for p in SPairLayout(spair_root).pairs("test", subset="dog").pairs] == ["dog"]


def test_strict_mode_names_the_file(spair_root):
    with pytest.raises(DataError, match=r"000002-a-b:cat\.json: malformed pair file"):
        SPairLayout(spair_root, strict=True).pairs("test")


def test_missing_pair_file_is_reported_or_ignored(spair_root):
    (spair_root / "PairAnnotation" / "test" / "000004-a-b:dog.json").unlink()
    skipped = SPairLayout(spair_root).pairs("test").skipped
    assert any(s.reason == "missing pair file" for s in skipped)
    ignored = SPairLayout(spair_root, missing_pair_files="ignore").pairs("test").skipped
    assert not any(s.reason == "missing pair file" for s in ignored)


def test_missing_dataset_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        SPairLayout(tmp_path / "nowhere").prepare(download=False)
    assert "SPair-71k.tar.gz" in info.value.hint


# The rules every adapter shares (DatasetAdapter.pairs): missing images and impossible keypoints ----------------
def test_a_missing_image_is_skipped_and_named_not_a_crash_later(spair_root):
    image = spair_root / "JPEGImages" / "dog" / "b.jpg"
    image.unlink()
    result = SPairLayout(spair_root).pairs("test")  # the reader's defaults: no option to ask for the check
    assert [p.pair_id for p in result.pairs] == ["000001-a-b:cat"]
    missing = [s for s in result.skipped if s.reason == "missing image"]
    assert [(s.name, s.file) for s in missing] == [("000004-a-b:dog", str(image))]
    assert "PairAnnotation/test/000004-a-b:dog.json" in missing[0].detail
    with pytest.raises(DataError, match=r"dog/b\.jpg: missing image"):
        SPairLayout(spair_root, missing_pair_files="ignore", strict=True).pairs("test", subset="dog")


@pytest.mark.parametrize("trg_kps, problem", [
    ([[5, 6], [1e9, -5]], "trg keypoint 1 at (1e+09, -5) lies outside the 50x20 image by more than 0.5"),
    ([[5, 6], [40, 44.5]], "trg keypoint 1 at (40, 44.5) lies outside the 50x20 image"),  # last row 19, margin 25
    ([[5, 6], [float("nan"), 15]], "trg keypoint 1 is (nan, 15): not a number"),
])
def test_an_impossible_keypoint_skips_its_pair_naming_the_file(spair_root, trg_kps, problem):
    path = spair_root / "PairAnnotation" / "test" / "000004-a-b:dog.json"
    _write_pair(spair_root, "test", "000004-a-b:dog", category="dog", trg_kps=trg_kps)
    result = SPairLayout(spair_root).pairs("test", subset="dog")
    assert not result.pairs
    (skipped,) = result.skipped
    assert (skipped.reason, skipped.file) == ("keypoint off the image", str(path)) and problem in skipped.detail
    with pytest.raises(DataError, match=r"000004-a-b:dog\.json: keypoint off the image: trg keypoint 1") as raised:
        SPairLayout(spair_root, strict=True).pairs("test", subset="dog")
    # a COCO file holds many pairs: the message names the pair, whatever the problem
    assert "in pair 000004-a-b:dog" in str(raised.value)


def test_keypoints_slightly_outside_the_image_are_kept(spair_root):
    # real annotations sit outside sometimes (MP-100: up to 0.26 of the longer side); 0.5 of it is accepted
    _write_pair(spair_root, "test", "000004-a-b:dog", category="dog", trg_kps=[[-25, 6], [74, 44]],
                src_kps=[[-20, 4], [59, 49]])  # 50 x 20 target (margin 25 px), 40 x 30 source (margin 20 px)
    assert [p.pair_id for p in SPairLayout(spair_root, strict=True).pairs("test", subset="dog").pairs] == [
        "000004-a-b:dog"]
