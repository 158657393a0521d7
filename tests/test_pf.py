"""PF-PASCAL and PF-WILLOW: the adapters on tiny fixtures in the official formats, and the benchmarks end to end."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.io import savemat

import fake_pf
from offset_matcher import OFFSET_MATCHER
from corrbench.datasets import make_adapter
from corrbench.datasets.download import fetch_source
from corrbench.datasets.pf_pascal import PF_PASCAL_IMAGES_SOURCE, PF_PASCAL_PAIRS_SOURCE, PFPascal
from corrbench.datasets.pf_willow import PF_WILLOW_IMAGES_SOURCE, PF_WILLOW_PAIRS_SOURCE, PFWillow
from corrbench.errors import ConfigError, DataError
from corrbench.evaluate import RunOptions, run
from corrbench.registry import BENCHMARKS

ALPHAS = ["0.01", "0.05", "0.1", "0.15", "0.2"]


def metric(result, name="pck", by="image"):
    return [result["metrics"][name][by]["all"][a] for a in ALPHAS]


def _run(data_root, tmp_path, benchmark, method="oracle", **options):
    return run(RunOptions(method=method, benchmark=benchmark, options=options, data_root=data_root,
                          out=tmp_path / "r", progress=False, download=False)).result


# PF-PASCAL ----------------------------------------------------------------------------------------------
def pascal(data_root, strict=False, **options) -> PFPascal:
    spec = BENCHMARKS.get("pf-pascal")
    return PFPascal(data_root / spec.data_dir, strict=strict, **{**spec.adapter_options, **options})


@pytest.mark.parametrize("convention", ["sd4match", "cnngeometric"])
def test_pf_pascal_reads_both_pair_list_conventions_and_says_which(tmp_path, convention, caplog):
    root = fake_pf.write_pf_pascal(tmp_path, convention)
    adapter = pascal(tmp_path)
    assert adapter.is_available()
    with caplog.at_level(logging.INFO, logger="corrbench.datasets.pf_pascal"):
        result = adapter.pairs("test")
    assert result.notes["pair_list_format"] == convention and f"({convention} convention)" in caplog.text
    assert not result.skipped and [p.category for p in result.pairs] == ["aeroplane", "cat", "dog"]
    first = result.pairs[0]
    assert first.pair_id == "000001-2007_000032-2008_000033:aeroplane"
    assert first.src_image == root / "PF-dataset-PASCAL" / "JPEGImages" / "2007_000032.jpg"
    assert (first.src_size, first.trg_size) == ((100, 80), (120, 60))
    # rows 1 (NaN in the source) and 3 (NaN in the target) are dropped: only rows valid in both remain
    np.testing.assert_array_equal(first.src_kps, [[10, 10], [50, 40]])
    np.testing.assert_array_equal(first.trg_kps, [[20, 15], [60, 40]])
    if convention == "sd4match":
        assert first.kp_ids == ("0", "2")  # the annotation rows
        np.testing.assert_array_equal(first.trg_bbox, [1, 2, 118, 57])
    else:
        assert first.kp_ids == ("0", "1") and first.trg_bbox is None  # the file carries only valid keypoints


def test_pf_pascal_conventions_give_the_same_pairs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fake_pf.write_pf_pascal(a, "sd4match")
    fake_pf.write_pf_pascal(b, "cnngeometric")
    pairs_a, pairs_b = pascal(a).pairs("test"), pascal(b).pairs("test")
    assert pairs_a.fingerprint() == pairs_b.fingerprint()
    for pa, pb in zip(pairs_a.pairs, pairs_b.pairs):
        np.testing.assert_array_equal(pa.trg_kps, pb.trg_kps)


def test_pf_pascal_training_pairs_keep_the_flip_flag_and_can_be_floored(tmp_path):
    fake_pf.write_pf_pascal(tmp_path)
    trn = pascal(tmp_path).pairs("trn").pairs
    assert [p.meta for p in trn] == [{"flip": 1}] * 3
    (data := tmp_path / "pf-pascal" / "PF-dataset-PASCAL" / "Annotations" / "dog" / "2010_000201.mat").unlink()
    fake_pf.write_mat(data, [[15.7, 10.2], [45.5, 25.9]], [1, 2, 3, 4])
    floored = pascal(tmp_path, floor_keypoints=True).pairs("test").pairs[2]
    np.testing.assert_array_equal(floored.trg_kps, [[15, 10], [45, 25]])
    with pytest.raises(ConfigError, match="unknown PF-PASCAL split"):
        pascal(tmp_path).pairs("train")


def _corrupt_mat(root):
    path = root / "PF-dataset-PASCAL" / "Annotations" / "cat" / "2009_000101.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file, but then garbage" + bytes(range(256)))
    return path, "malformed annotation", "unreadable .mat"


def _missing_mat(root):
    path = root / "PF-dataset-PASCAL" / "Annotations" / "cat" / "2009_000101.mat"
    path.unlink()
    return path, "missing annotation", ""


def _count_mismatch(root):
    path = root / "PF-dataset-PASCAL" / "Annotations" / "cat" / "2009_000101.mat"
    fake_pf.write_mat(path, [[1, 2], [3, 4]], [0, 0, 10, 10])
    return path, "malformed annotation", "kps has 2 rows but"


def _mat_without_kps(root):
    path = root / "PF-dataset-PASCAL" / "Annotations" / "cat" / "2009_000101.mat"
    savemat(path, {"bbox": np.array([[0, 0, 10, 10]])})
    return path, "malformed annotation", "no 'kps' variable"


def _bad_class(root):
    path = root / "pf-pascal_image_pairs" / "test_pairs.csv"
    path.write_text(path.read_text().replace("2009_000101.jpg,8", "2009_000101.jpg,21"))
    return path, "malformed pair row", "line 3: class '21' is not a 1-based index"


def _missing_image(root):
    path = root / "PF-dataset-PASCAL" / "JPEGImages" / "2009_000101.jpg"
    path.unlink()
    return path, "missing image", "named on line 3"


def _short_row(root):
    path = root / "pf-pascal_image_pairs" / "test_pairs.csv"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]  # the cat pair loses its class column
    path.write_text("\n".join(lines) + "\n")
    return path, "malformed pair row", "line 3: 2 columns, but the header has 3"


PASCAL_PROBLEMS = {"unreadable .mat": _corrupt_mat, "missing .mat": _missing_mat, "no kps": _mat_without_kps,
                   "class out of range": _bad_class,
                   "keypoint count mismatch": _count_mismatch, "missing image": _missing_image,
                   "wrong column count": _short_row}


@pytest.mark.parametrize("problem", sorted(PASCAL_PROBLEMS))
def test_pf_pascal_malformed_input_is_skipped_or_raises(tmp_path, problem):
    root = fake_pf.write_pf_pascal(tmp_path)
    path, reason, detail = PASCAL_PROBLEMS[problem](root)
    result = pascal(tmp_path).pairs("test")
    assert [p.category for p in result.pairs] == ["aeroplane", "dog"]
    (skipped,) = result.skipped
    assert (skipped.reason, skipped.file) == (reason, str(path)) and detail in skipped.detail
    with pytest.raises(DataError, match=f"{path.name}: {reason}"):
        pascal(tmp_path, strict=True).pairs("test")


def test_pf_pascal_cnngeometric_count_mismatch_and_unknown_header(tmp_path):
    root = fake_pf.write_pf_pascal(tmp_path, "cnngeometric")
    path = root / "PF-dataset-PASCAL" / "test_pairs_pf_pascal.csv"
    rows = fake_pf.cnngeometric_rows()
    rows[0][5] = rows[0][5] + ";99"  # XB gets a third value
    fake_pf.write_csv(path, fake_pf.CNNGEOMETRIC_HEADER, rows)
    (skipped,) = pascal(tmp_path).pairs("test").skipped
    assert skipped.reason == "malformed pair row" and "keypoint count mismatch" in skipped.detail
    # CNNGeometric's loaders read the first three columns by position, so their names do not matter
    fake_pf.write_csv(path, ["imageA", "imageB", "cls", "XA", "YA", "XB", "YB"], fake_pf.cnngeometric_rows())
    assert len(pascal(tmp_path).pairs("test").pairs) == 3
    fake_pf.write_csv(path, ["src", "trg", "cls"], rows)
    with pytest.raises(DataError, match=r"test_pairs_pf_pascal\.csv: unknown PF-PASCAL pair-list header"):
        pascal(tmp_path).pairs("test")


def test_pf_pascal_sources_and_missing_data(tmp_path):
    assert PF_PASCAL_IMAGES_SOURCE.url == (
        "https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip")
    assert PF_PASCAL_PAIRS_SOURCE.url == "https://www.robots.ox.ac.uk/~xinghui/sd4match/pf-pascal_image_pairs.zip"
    adapter = make_adapter(BENCHMARKS.get("pf-pascal"), tmp_path)
    assert not adapter.is_available()
    with pytest.raises(DataError, match="PF-PASCAL data not found") as info:
        adapter.prepare(download=False)
    assert "pf-pascal_image_pairs.zip" in info.value.hint and "PF-dataset-PASCAL.zip" in info.value.hint


def test_pf_pascal_release_zips_extract_where_the_adapter_looks(tmp_path):
    """Zips shaped like the releases (PF-dataset-PASCAL/..., pf-pascal_image_pairs/...) through the download
    seam give a readable dataset: the declared destinations and ``provides`` paths match."""
    made = fake_pf.write_pf_pascal(tmp_path / "made")
    data_root = tmp_path / "data"
    downloads = data_root / ".downloads"
    fake_pf.zip_folder(made / "PF-dataset-PASCAL", downloads / PF_PASCAL_IMAGES_SOURCE.filename, "PF-dataset-PASCAL")
    fake_pf.zip_folder(made / "pf-pascal_image_pairs", downloads / PF_PASCAL_PAIRS_SOURCE.filename,
                       "pf-pascal_image_pairs")
    for source in (PF_PASCAL_IMAGES_SOURCE, PF_PASCAL_PAIRS_SOURCE):
        fetch_source(source, data_root, progress=False)
    assert len(pascal(data_root).pairs("test").pairs) == 3


def test_pf_pascal_end_to_end(tmp_path):
    fake_pf.write_pf_pascal(tmp_path)
    oracle = _run(tmp_path, tmp_path, "pf-pascal")
    assert (oracle["counts"]["pairs"], oracle["counts"]["points"]) == (3, 7)
    assert metric(oracle) == metric(oracle, "pck_dagger", "point") == [100.0] * 5
    # T = 120, 160, 60 (target image sides): a 5 px error is right from 0.05, 0.05 and 0.1 on
    assert fake_pf.PASCAL_THRESHOLDS == [120, 160, 60]
    offset = _run(tmp_path, tmp_path, "pf-pascal", method=OFFSET_MATCHER, dx=3.0, dy=4.0)
    assert metric(offset) == [0.0, pytest.approx(200 / 3), 100.0, 100.0, 100.0]
    assert metric(offset, by="point") == [0.0, pytest.approx(500 / 7), 100.0, 100.0, 100.0]
    assert metric(offset, "pck_dagger") == metric(offset)


# PF-WILLOW ----------------------------------------------------------------------------------------------
def willow(data_root, strict=False, spec_name="pf-willow", **options) -> PFWillow:
    spec = BENCHMARKS.get(spec_name)
    return PFWillow(data_root / spec.data_dir, strict=strict, **{**spec.adapter_options, **options})


def test_pf_willow_reads_the_pair_list(tmp_path):
    root = fake_pf.write_pf_willow(tmp_path)
    adapter = willow(tmp_path)
    assert adapter.is_available()
    result = adapter.pairs("test")
    assert not result.skipped and [p.category for p in result.pairs] == ["car(G)", "duck(S)"]
    car = result.pairs[0]
    assert car.pair_id == "000001-Cars_001a-Cars_002a:car(G)"
    assert car.src_image == root / "PF-dataset" / "car(G)" / "Cars_001a.png" and car.trg_size == (120, 90)
    np.testing.assert_array_equal(car.trg_kps, fake_pf.WILLOW_PAIRS[0][3])  # 10 x's then 10 y's, per image
    np.testing.assert_array_equal(car.trg_bbox, [20, 10, 100, 70])
    np.testing.assert_array_equal(willow(tmp_path, spec_name="pf-willow-bbox").pairs("test").pairs[0].trg_bbox,
                                  [-1, -1, 100, 70])
    assert [p.category for p in adapter.pairs("test", subset="duck(S)").pairs] == ["duck(S)"]
    with pytest.raises(ConfigError, match="only a test split"):
        adapter.pairs("trn")


@pytest.mark.parametrize("layout", sorted(fake_pf.WILLOW_PAIR_LISTS))
def test_pf_willow_finds_the_pair_list_where_each_codebase_puts_it(tmp_path, layout):
    root = fake_pf.write_pf_willow(tmp_path, layout)
    adapter = willow(tmp_path)
    assert adapter.is_available()
    result = adapter.pairs("test")
    assert [p.category for p in result.pairs] == ["car(G)", "duck(S)"] and not result.skipped
    assert result.notes == {"pair_list": str(root / fake_pf.WILLOW_PAIR_LISTS[layout]), "pair_list_layout": layout}
    assert result.pairs[0].src_image == root / "PF-dataset" / "car(G)" / "Cars_001a.png"


def test_pf_willow_without_a_pair_list_names_every_place_it_looked(tmp_path):
    root = fake_pf.write_pf_willow(tmp_path)
    (root / "test_pairs.csv").unlink()
    with pytest.raises(DataError, match="PF-WILLOW pair list not found") as info:
        willow(tmp_path).pairs("test")
    assert str(root / "PF-dataset" / "test_pairs_pf.csv") in str(info.value)


def _willow_short_row(root):
    path = root / "test_pairs.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    return path, "malformed pair row", "line 2: 41 columns, a PF-WILLOW row has 42"


def _willow_not_a_number(root):
    path = root / "test_pairs.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace(",20.0,", ",twenty,", 1)
    path.write_text("\n".join(lines) + "\n")
    return path, "malformed pair row", "not a number"


def _willow_missing_image(root):
    path = root / "PF-dataset" / "car(G)" / "Cars_002a.png"
    path.unlink()
    return path, "missing image", "named on line 2"


WILLOW_PROBLEMS = {"wrong column count": _willow_short_row, "not a number": _willow_not_a_number,
                   "missing image": _willow_missing_image}


@pytest.mark.parametrize("problem", sorted(WILLOW_PROBLEMS))
def test_pf_willow_malformed_input_is_skipped_or_raises(tmp_path, problem):
    root = fake_pf.write_pf_willow(tmp_path)
    path, reason, detail = WILLOW_PROBLEMS[problem](root)
    result = willow(tmp_path).pairs("test")
    assert [p.category for p in result.pairs] == ["duck(S)"]
    (skipped,) = result.skipped
    assert (skipped.reason, skipped.file) == (reason, str(path)) and detail in skipped.detail
    with pytest.raises(DataError, match=rf"{path.name.replace('(', '[(]').replace(')', '[)]')}: {reason}"):
        willow(tmp_path, strict=True).pairs("test")


def test_a_missing_image_is_reported_for_every_pair_that_uses_it(tmp_path):
    root = fake_pf.write_pf_willow(tmp_path)
    car = fake_pf.willow_row(*fake_pf.WILLOW_PAIRS[0])
    fake_pf.write_csv(root / "test_pairs.csv", fake_pf.WILLOW_HEADER, [car, car])
    (root / "PF-dataset" / "car(G)" / "Cars_002a.png").unlink()
    result = willow(tmp_path).pairs("test")
    assert not result.pairs and [(s.reason, s.detail) for s in result.skipped] == [
        ("missing image", f"named on line {line} of {root / 'test_pairs.csv'}") for line in (2, 3)]


def test_pf_willow_header_with_wrong_column_count_is_an_error(tmp_path):
    root = fake_pf.write_pf_willow(tmp_path)
    fake_pf.write_csv(root / "test_pairs.csv", fake_pf.WILLOW_HEADER[:-1], [])
    with pytest.raises(DataError, match=r"test_pairs\.csv: the header has 41 columns"):
        willow(tmp_path).pairs("test")
    with pytest.raises(ConfigError, match="object_box"):
        willow(tmp_path, object_box="object")


def test_pf_willow_sources_extract_where_the_adapter_looks(tmp_path):
    assert PF_WILLOW_IMAGES_SOURCE.url == "https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip"
    assert PF_WILLOW_PAIRS_SOURCE.url == "https://www.robots.ox.ac.uk/~xinghui/sd4match/test_pairs.csv"
    made = fake_pf.write_pf_willow(tmp_path / "made")
    data_root = tmp_path / "data"
    fake_pf.zip_folder(made / "PF-dataset", data_root / ".downloads" / PF_WILLOW_IMAGES_SOURCE.filename, "PF-dataset")
    (data_root / ".downloads" / PF_WILLOW_PAIRS_SOURCE.filename).write_bytes((made / "test_pairs.csv").read_bytes())
    adapter = make_adapter(BENCHMARKS.get("pf-willow"), data_root)
    assert not adapter.is_available()
    for source in PFWillow.sources:
        fetch_source(source, data_root, progress=False)
    assert adapter.is_available() and len(adapter.pairs("test").pairs) == 2


@pytest.mark.parametrize(
    "spec_name, thresholds, expected",
    [
        # box of the target keypoints: T = 80 and 40; a 5 px error is right from 0.1 and 0.15 on
        ("pf-willow", fake_pf.WILLOW_BBOX_KP_THRESHOLDS, [0.0, 0.0, 50.0, 100.0, 100.0]),
        # padded to (-1, -1): T = 101 and 71; right from 0.05 (5 <= 5.05) and 0.1 on
        ("pf-willow-bbox", fake_pf.WILLOW_PADDED_THRESHOLDS, [0.0, 50.0, 100.0, 100.0, 100.0]),
    ],
)
def test_pf_willow_end_to_end(tmp_path, spec_name, thresholds, expected):
    fake_pf.write_pf_willow(tmp_path)
    spec = BENCHMARKS.get(spec_name)
    pairs = make_adapter(spec, tmp_path).pairs("test").pairs
    from corrbench.metrics import pck_threshold

    assert [pck_threshold(spec.protocol.threshold, trg_bbox=p.trg_bbox, trg_size=p.trg_size, trg_kps=p.trg_kps,
                          trg_visible=p.trg_visible) for p in pairs] == thresholds
    oracle = _run(tmp_path, tmp_path, spec_name)
    assert (oracle["counts"]["pairs"], oracle["counts"]["points"]) == (2, 20)
    assert metric(oracle) == metric(oracle, "pck_dagger", "point") == [100.0] * 5
    offset = _run(tmp_path, tmp_path, spec_name, method=OFFSET_MATCHER, dx=3.0, dy=4.0)
    assert metric(offset) == metric(offset, by="point") == expected  # 10 points per pair
    assert metric(offset, "pck_dagger") == expected
