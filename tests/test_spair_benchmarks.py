"""SPair-71k and SPair-U: the adapters on tiny fixtures in the official layouts, and the benchmarks end to end."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import fake_spair
from offset_matcher import OFFSET_MATCHER
from corrbench.datasets import make_adapter
from corrbench.datasets.download import fetch_source
from corrbench.datasets.spair import SPairLayout
from corrbench.datasets.spair_u import SPAIR_U_SOURCE, SPairU
from corrbench.errors import ConfigError, DataError
from corrbench.evaluate import RunOptions, run
from corrbench.registry import BENCHMARKS

ALPHAS = ["0.01", "0.05", "0.1", "0.15", "0.2"]
TEST_STEMS = [stem for stem, *_ in fake_spair.TEST_PAIRS]


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    fake_spair.write_spair71k(root)
    return root


def spair71k(data_root, strict=False):
    return make_adapter(BENCHMARKS.get("spair71k"), data_root, strict=strict)


def metric(result, name="pck", by="image"):
    return [result["metrics"][name][by]["all"][a] for a in ALPHAS]


# SPair-71k -----------------------------------------------------------------------------------------------
def test_spair71k_reads_every_split_with_variation_fields_and_masks(data_root):
    adapter = spair71k(data_root)
    assert adapter.is_available()
    test = adapter.pairs("test")
    assert [p.pair_id for p in test.pairs] == TEST_STEMS and not test.skipped
    pair = test.pairs[0]
    assert pair.meta == {"mirror": 0, "viewpoint_variation": 1, "scale_variation": 2, "truncation": 0,
                         "occlusion": 3, "mask_label": 8}
    assert pair.trg_mask == data_root / "SPair-71k" / "Segmentation" / "cat" / "2008_000002.png"
    np.testing.assert_array_equal(pair.trg_bbox, [10, 5, 90, 45])
    assert pair.src_size == (120, 90) and pair.kp_ids == ("0", "1", "2")
    assert test.pairs[2].meta["mask_label"] == 12  # dog: VOC index 11, stored + 1
    assert [p.pair_id for p in adapter.pairs("trn").pairs] == [fake_spair.TRN_STEM]
    assert [p.pair_id for p in adapter.pairs("val").pairs] == [fake_spair.VAL_STEM]
    with pytest.raises(ConfigError, match="unknown SPair-71k split"):
        adapter.pairs("train")


MALFORMED = {
    "bad JSON": (lambda path: path.write_text("{not json"), "malformed pair file", "not valid JSON"),
    "missing keys": (lambda path: _edit(path, lambda d: d.pop("trg_bndbox")), "malformed pair file",
                     "missing field(s) trg_bndbox"),
    "keypoint count mismatch": (lambda path: _edit(path, lambda d: d["trg_kps"].pop()), "malformed pair file",
                                "src_kps has 3 points but trg_kps has 2"),
}


def _edit(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("problem", sorted(MALFORMED))
def test_spair71k_malformed_pair_file_is_skipped_or_raises(data_root, problem):
    corrupt, reason, detail = MALFORMED[problem]
    path = data_root / "SPair-71k" / "PairAnnotation" / "test" / f"{TEST_STEMS[0]}.json"
    corrupt(path)
    result = spair71k(data_root).pairs("test")
    assert [p.pair_id for p in result.pairs] == TEST_STEMS[1:]
    (skipped,) = result.skipped
    assert (skipped.name, skipped.reason, skipped.file) == (TEST_STEMS[0], reason, str(path))
    assert detail in skipped.detail
    with pytest.raises(DataError, match=f"{path.name}: {reason}"):
        spair71k(data_root, strict=True).pairs("test")


def test_spair71k_missing_image_is_skipped_or_raises(data_root):
    image = data_root / "SPair-71k" / "JPEGImages" / "dog" / "2009_000011.jpg"
    image.unlink()
    result = spair71k(data_root).pairs("test")
    (skipped,) = result.skipped
    assert (skipped.reason, skipped.file) == ("missing image", str(image))
    assert TEST_STEMS[2] in skipped.name and "PairAnnotation" in skipped.detail
    with pytest.raises(DataError, match=r"2009_000011\.jpg: missing image") as info:
        spair71k(data_root, strict=True).pairs("test")
    assert "put the image at that path" in info.value.hint and "remove the file" not in info.value.hint


def test_spair71k_declares_the_official_archive(tmp_path):
    (source,) = SPairLayout.sources
    assert source.url == "https://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz"
    assert (source.destination, source.provides, source.kind) == ("", "SPair-71k/Layout/large/test.txt", "archive")
    with pytest.raises(DataError, match="not found") as info:
        make_adapter(BENCHMARKS.get("spair71k"), tmp_path).prepare(download=False)
    assert source.url in info.value.hint


def test_layout_subclasses_do_not_inherit_spair71k_facts():
    class OtherData(SPairLayout):
        """A layout that declares nothing of its own."""

    assert OtherData.sources == () and SPairU.sources[0] is SPairLayout.sources[0]
    assert OtherData.segmentation_labels == {} and SPairU.segmentation_labels["cat"] == 8


# SPair-U ------------------------------------------------------------------------------------------------
def spair_u(data_root, strict=False, **options):
    """The spair-u benchmark's adapter, with some options changed."""
    spec = BENCHMARKS.get("spair-u")
    return SPairU(data_root / spec.data_dir, strict=strict, **{**spec.adapter_options, **options})


@pytest.mark.parametrize("layout", ["marco", "zip", "jamais-vu", "jamais-vu-in-spair-u"])
def test_spair_u_reads_each_layout_and_says_which(data_root, layout, caplog):
    folder = fake_spair.write_spair_u(data_root, layout)
    adapter = spair_u(data_root)
    assert adapter.is_available()
    with caplog.at_level(logging.INFO, logger="corrbench.datasets.spair_u"):
        result = adapter.pairs("test")
    expected_layout = "jamais-vu" if layout.startswith("jamais-vu") else "marco"
    assert (result.notes["annotation_layout"], result.notes["annotation_dir"]) == (expected_layout, str(folder))
    assert f"from the {expected_layout} layout" in caplog.text
    # Layout order; the dog stem has no SPair-U file and is not a pair (not reported as skipped either)
    assert [p.pair_id for p in result.pairs] == TEST_STEMS[:2] and not result.skipped
    pair = result.pairs[0]
    assert pair.kp_ids == ("30", "31")
    np.testing.assert_array_equal(pair.trg_kps, [[34, 26], [66, 36]])
    assert pair.src_image == data_root / "SPair-71k" / "JPEGImages" / "cat" / "2008_000001.jpg"


def test_spair_u_uses_marcos_links_into_spair71k(data_root):
    fake_spair.write_spair_u(data_root, "marco")
    for name in ("JPEGImages", "Layout"):
        (data_root / "SPair-U" / name).symlink_to(data_root / "SPair-71k" / name)
    pair = spair_u(data_root).pairs("test").pairs[0]
    assert pair.src_image == data_root / "SPair-U" / "JPEGImages" / "cat" / "2008_000001.jpg"


def test_spair_u_prefers_the_spair_u_folder_and_can_be_told_the_layout(data_root):
    fake_spair.write_spair_u(data_root, "marco")
    fake_spair.write_spair_u(data_root, "jamais-vu")
    assert spair_u(data_root).pairs("test").notes["annotation_layout"] == "marco"
    assert spair_u(data_root, annotation_layout="jamais-vu").pairs("test").notes["annotation_layout"] == "jamais-vu"


def test_spair_u_missing_annotations_say_where_to_get_them(data_root):
    adapter = spair_u(data_root)
    assert not adapter.is_available()
    with pytest.raises(DataError, match="no SPair-U annotations found") as info:
        adapter.pairs("test")
    assert "SPair-U.zip" in info.value.hint
    fake_spair.write_spair_u(data_root, "marco")
    with pytest.raises(DataError, match="no SPair-U annotations"):
        spair_u(data_root, annotation_layout="jamais-vu").pairs("test")
    with pytest.raises(ConfigError, match="only a test split"):
        spair_u(data_root).pairs("val")
    with pytest.raises(ConfigError, match="annotation_layout"):
        spair_u(data_root, annotation_layout="elsewhere")


def test_spair_u_malformed_file_is_skipped_or_raises(data_root):
    folder = fake_spair.write_spair_u(data_root, "jamais-vu")
    path = folder / f"{TEST_STEMS[1]}.json"
    _edit(path, lambda d: d.pop("src_kps"))
    result = spair_u(data_root).pairs("test")
    assert [p.pair_id for p in result.pairs] == TEST_STEMS[:1]
    assert [(s.reason, s.file) for s in result.skipped] == [("malformed pair file", str(path))]
    with pytest.raises(DataError, match=r"ExtraPairAnnotation/test/000002.*\.json: malformed pair file: missing field"):
        spair_u(data_root, strict=True).pairs("test")


def test_spair_u_zip_as_downloaded_is_found(data_root):
    """The declared source matches the release's layout (content under datasets/SPair-U/): the download seam
    extracts a zip shaped like it and the adapter then finds the annotations."""
    fake_spair.write_spair_u_zip(data_root / ".downloads" / SPAIR_U_SOURCE.filename)
    adapter = spair_u(data_root)
    assert not adapter.is_available()
    fetch_source(SPAIR_U_SOURCE, data_root, progress=False)
    assert adapter.is_available() and len(spair_u(data_root).pairs("test").pairs) == 2


def test_spair_u_dagger_candidates(data_root):
    """Default: only SPair-U's keypoints are candidates. ``new+original`` adds SPair-71k's keypoints of the stem
    as target-only rows: never scored, but a prediction nearer to one of them fails PCK-dagger."""
    fake_spair.write_spair_u(data_root, "marco")
    protocol = BENCHMARKS.get("spair-u").protocol
    plain = spair_u(data_root).pairs("test").pairs[0]
    both = spair_u(data_root, dagger_candidates="new+original").pairs("test").pairs[0]
    assert both.num_keypoints == 2 + 3 and both.valid.tolist() == [True, True, False, False, False]
    assert both.kp_ids[2:] == ("spair71k:0", "spair71k:1", "spair71k:2")
    # (66, 36) + (3, 4) = (69, 40) lies 1 px from SPair-71k's keypoint (70, 40) and 5 px from its own
    offset = np.array([3.0, 4.0])
    score_plain = protocol.score(plain, plain.trg_kps + offset)
    score_both = protocol.score(both, both.trg_kps + offset)
    assert score_plain.n_points == score_both.n_points == 2
    assert score_plain.correct == score_both.correct == (0, 0, 2, 2, 2)
    assert score_plain.correct_dagger == (0, 0, 2, 2, 2)
    assert score_both.correct_dagger == (0, 0, 1, 1, 1)


# End to end ---------------------------------------------------------------------------------------------
def _run(data_root, tmp_path, benchmark, method="oracle", **options):
    return run(RunOptions(method=method, benchmark=benchmark, options=options, data_root=data_root,
                          out=tmp_path / "r", progress=False, download=False)).result


def test_spair71k_oracle_scores_100(data_root, tmp_path):
    result = _run(data_root, tmp_path, "spair71k")
    assert (result["counts"]["pairs"], result["counts"]["points"]) == (3, 9)
    for name in ("pck", "pck_dagger"):
        for by in ("image", "point"):
            assert metric(result, name, by) == [100.0] * 5
    assert result["benchmark"]["key"] == "spair71k@v1" and result["counts"]["skipped"] == {}


def test_spair71k_offset_matcher_scores_as_computed_by_hand(data_root, tmp_path):
    """Every error is 5 px; the target boxes give T = 80, 40, 60, so a pair is right from alpha = 0.1, 0.15,
    0.1 on: per image (1 + 0 + 1) / 3 at 0.1, per point (3 + 0 + 4) / 9."""
    assert list(fake_spair.TEST_THRESHOLDS.values()) == [80, 40, 60]
    result = _run(data_root, tmp_path, "spair71k", method=OFFSET_MATCHER, dx=3.0, dy=4.0)
    assert metric(result) == [0.0, 0.0, pytest.approx(200 / 3), 100.0, 100.0]
    assert metric(result, by="point") == [0.0, 0.0, pytest.approx(700 / 9), 100.0, 100.0]
    assert metric(result, "pck_dagger") == metric(result)  # keypoints are far apart: nothing lands nearer another


@pytest.mark.parametrize("layout", ["zip", "jamais-vu"])
def test_spair_u_end_to_end(data_root, tmp_path, layout):
    fake_spair.write_spair_u(data_root, layout)
    oracle = _run(data_root, tmp_path, "spair-u")
    assert (oracle["counts"]["pairs"], oracle["counts"]["points"]) == (2, 3)
    assert metric(oracle) == metric(oracle, "pck_dagger", "point") == [100.0] * 5
    # the result says which arrangement of SPair-U's files was read
    assert oracle["benchmark"]["data"]["annotation_layout"] == ("marco" if layout == "zip" else "jamais-vu")
    # T = 80 (2 keypoints) and 40 (1 keypoint): a 5 px error is right from 0.1 and 0.15 on
    offset = _run(data_root, tmp_path, "spair-u", method=OFFSET_MATCHER, dx=3.0, dy=4.0)
    assert metric(offset) == [0.0, 0.0, 50.0, 100.0, 100.0]
    assert metric(offset, by="point") == [0.0, 0.0, pytest.approx(200 / 3), 100.0, 100.0]
