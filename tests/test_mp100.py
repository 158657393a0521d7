"""MARCO's MP-100 benchmark: the curation builder, the official-list install, the reader and the five specs,
on generated MP-100 fixtures (COCO files, JPEGs, MARCO-format lists and release zip; see fake_mp100)."""

import ast
import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fake_mp100
from fake_server import FakeServer
from corrbench.datasets import make_adapter
from corrbench.cli import build_mp100_command
from corrbench.datasets import mp100 as mp100_package
from corrbench.datasets.mp100 import adapter as mp100_reader
from corrbench.datasets.mp100 import release as mp100_release
from corrbench.datasets.mp100.adapter import MP100
from corrbench.datasets.mp100.annotations import load_annotations
from corrbench.datasets.mp100.build import allocate, build_mp100
from corrbench.datasets.mp100.layout import CATEGORIES, DOMAINS, SPAIR_OVERLAP
from corrbench.datasets.mp100.release import install_official_lists
from corrbench.errors import ConfigError, DataError
from corrbench.evaluate import RunOptions, run
from corrbench.metrics import pck_threshold
from corrbench.registry import BENCHMARKS
from offset_matcher import OFFSET_MATCHER

ALPHAS = ["0.01", "0.05", "0.1", "0.15", "0.2"]
BENCHMARK_OF = {d.key: d.benchmark for d in DOMAINS.values()}


def _pairs_dir(root: Path) -> Path:
    return root / "MP-100" / "pairs"


def _files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(_pairs_dir(root).iterdir())}


def _lists(root: Path) -> dict[str, list[dict]]:
    return {d: json.loads((_pairs_dir(root) / spec.list_file).read_text()) for d, spec in DOMAINS.items()}


def _install_fixture_lists(fake, tmp_path, lists=None):
    zip_path = fake_mp100.write_release_zip(tmp_path / "mp100_pairs.zip", lists or fake_mp100.official_lists(fake))
    install_official_lists(fake.data_root, zip_path=zip_path, annotations_root=fake.annotations,
                           images_root=fake.image_dir, progress=False)  # fmt: skip
    return zip_path


@pytest.fixture
def fake(tmp_path):
    return fake_mp100.make_mp100(tmp_path / "data")


# -- the benchmark's definition -------------------------------------------------------------------------


def test_category_table_matches_the_paper():
    counts = {d: sum(c.domain == d for c in CATEGORIES) for d in DOMAINS}
    assert counts == {"human_face": 1, "clothing": 12, "animal_body_unseen": 32, "animal_face": 26, "furniture": 4}
    assert len({c.id for c in CATEGORIES}) == len(CATEGORIES) == 75
    assert not {c.id for c in CATEGORIES} & SPAIR_OVERLAP.keys() and len(SPAIR_OVERLAP) == 11
    names = {c.name for c in CATEGORIES}
    assert {"shorts", "chair", "cat_body", "car"}.isdisjoint(names) and {"sofa", "swivelchair", "macaque"} <= names


def test_builder_modules_import_neither_torch_nor_numpy():
    folder = Path(mp100_package.__file__).parent
    writers = [path for path in sorted(folder.glob("*.py")) if path.name != "adapter.py"]  # the reader uses numpy
    assert {p.name for p in writers} >= {"build.py", "release.py", "install.py", "layout.py", "annotations.py"}
    for path in writers:
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert not imported & {"torch", "numpy"}, path.name


def test_allocate_is_equal_then_sorted_remainder_then_redistributed():
    assert allocate(7, {"b": 9, "a": 9, "c": 9}) == {"a": 3, "b": 2, "c": 2}
    assert allocate(10, {"a": 1, "b": 100, "c": 2, "d": 50}) == {"a": 1, "b": 4, "c": 2, "d": 3}
    assert allocate(10, {"a": 2, "b": 3}) == {"a": 2, "b": 3}  # too few: everything, and no more


# -- rebuilding the lists -------------------------------------------------------------------------------


def test_rebuild_applies_the_curation(fake):
    manifest = build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=8, progress=False)
    lists = _lists(fake.data_root)
    index = load_annotations(fake.annotations)
    listed = {f for entries in lists.values() for e in entries for f in (e["src_file"], e["trg_file"])}
    assert not any(f.startswith(("cat_body/", "chair/")) for f in listed)  # overlap removed, unused ignored
    assert "human_face/helen/trainset/train_only.jpg" not in listed  # train files are never read
    assert not any(fake.image(f).j == 3 for f in listed)  # fewer than 3 visible keypoints: dropped
    for domain, entries in lists.items():
        assert [e["episode_idx"] for e in entries] == list(range(len(entries)))
        assert len({(e["src_file"], e["trg_file"]) for e in entries}) == len(entries)
        for e in entries:
            src, trg = fake.image(e["src_file"]), fake.image(e["trg_file"])
            assert src.category_id == trg.category_id == e["category_id"] and src.j != trg.j
            assert fake_mp100.DOMAIN_OF[e["category_id"]] == domain
            assert sum(a and b for a, b in zip(src.visible, trg.visible)) >= 3
    assert manifest["kind"] == "rebuilt" and manifest["seed"] == 0
    assert manifest["curation"]["removed_spair_overlap"] == ["cat_body"]
    assert manifest["curation"]["instances_below_min_visible"]["face"] == 1
    assert set(manifest["curation"]["annotation_files"]) == {"mp100_split1_test.json", "mp100_split2_test.json"}
    # the more visible raccoon instance wins over the one with the lower annotation id
    assert index.instance("raccoon_body/0000.jpg", 90).ann_id == 90000
    # an image repeated by a later file keeps its first annotation
    assert index.images["skirt/0000.jpg"].width == 96
    face = manifest["domains"]["human_face"]
    assert face["categories"] == 1 and face["images"] == 3 and face["pairs"] == 6  # 3 images: 6 ordered pairs
    assert face["keypoints_per_pair"] == {"mean": 66.67, "min": 66, "max": 67}


def test_an_empty_keypoint_name_list_takes_the_count_from_the_annotations(fake, tmp_path):
    # the release's 300W face: "keypoints": [] on the category record, 68 x 3 numbers in every annotation
    split1 = json.loads((fake.annotations / "mp100_split1_test.json").read_text())
    assert next(c for c in split1["categories"] if c["id"] == 40)["keypoints"] == []
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=8, progress=False)
    assert len(_lists(fake.data_root)["human_face"]) == 6
    pairs = MP100(fake.root, domain="human_face").pairs("test")
    assert len(pairs.pairs) == 6 and not pairs.skipped
    assert pairs.pairs[0].num_keypoints == 68 and pairs.pairs[0].kp_ids[:2] == ("0", "1")


def test_unnamed_keypoints_with_disagreeing_counts_are_refused(fake):
    split1 = fake.annotations / "mp100_split1_test.json"
    coco = json.loads(split1.read_text())
    face = [a for a in coco["annotations"] if a["category_id"] == 40]
    face[2]["keypoints"] = face[2]["keypoints"][:-3]
    split1.write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"mp100_split1_test\.json: category 'face' \(id 40\) lists no keypoint "
                                        r"names .* 67 \(e\.g\. annotation 40002\), 68 \(e\.g\. annotation 40000\)"):
        load_annotations(fake.annotations)


def test_rebuilt_lists_use_marcos_format(fake):
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=4, progress=False)
    raw = (_pairs_dir(fake.data_root) / "pairs_clothing.json").read_bytes()
    entries = json.loads(raw)
    assert raw == json.dumps(entries, indent=2).encode() and not raw.endswith(b"\n")
    assert list(entries[0]) == ["episode_idx", "category_id", "src_file", "trg_file"]


def test_rebuild_is_byte_identical_twice_and_seeded(fake, tmp_path):
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=5, progress=False)
    first = _files(fake.data_root)
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=5, progress=False)
    assert _files(fake.data_root) == first
    assert not [p for p in (fake.root).iterdir() if p.name.startswith(".")]  # no staging folder left behind
    other = tmp_path / "other"
    build_mp100(fake.annotations, fake.image_dir, other, seed=1, pairs_per_domain=5, progress=False)
    assert _files(other)["pairs_clothing.json"] != first["pairs_clothing.json"]
    manifest = json.loads(first["manifest.json"])
    assert manifest["domains"]["clothing"]["sha256"] == hashlib.sha256(first["pairs_clothing.json"]).hexdigest()


def test_stratified_sampling_shares_pairs_equally(fake):
    manifest = build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=5, progress=False)
    # equal shares of 5 between skirt and trousers: 2 each, the remaining 1 to the first in name order
    assert manifest["domains"]["clothing"]["pairs_per_category"] == {"skirt": 3, "trousers": 2}
    manifest = build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=10, progress=False)
    # skirt (4 keypoints) has only 4 eligible pairs: trousers takes what skirt cannot give
    assert manifest["domains"]["clothing"]["pairs_per_category"] == {"skirt": 4, "trousers": 6}
    assert manifest["domains"]["furniture"]["pairs_per_category"] == {"sofa": 4, "table": 2}


def test_command_rebuilds_and_prints_statistics(fake):
    args = ["--data-root", str(fake.data_root), "--seed", "3"]
    first = CliRunner().invoke(build_mp100_command, args)
    assert first.exit_code == 0, first.output
    assert "mp100-apparel" in first.output and "kps/pair mean" in first.output and "rebuilt lists" in first.output
    files = _files(fake.data_root)
    again = CliRunner().invoke(build_mp100_command, [*args, "-q"])
    assert again.exit_code == 0 and _files(fake.data_root) == files
    assert json.loads(files["manifest.json"])["seed"] == 3


def test_missing_images_are_reported_with_their_source(fake, capsys):
    for image in fake.images[66]:  # the whole fly_body folder
        (fake.image_dir / image.file_name).unlink()
    (fake.image_dir / "fly_body").rmdir()
    (fake.image_dir / "sofa" / "0001.jpg").unlink()
    manifest = build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=8, progress=True)
    out = capsys.readouterr().out
    assert f"missing folder {fake.image_dir / 'fly_body'}" in out and "DeepPoseKit-Data" in out
    assert f"1 of 3 listed images missing in {fake.image_dir / 'sofa'}" in out and "Keypoint-5" in out
    body = manifest["domains"]["animal_body_unseen"]
    assert body["missing_images"]["folders"]["fly_body"]["folder_present"] is False
    assert body["missing_images"]["pairs_with_missing_images"] == body["pairs_per_category"]["fly"]
    assert (_pairs_dir(fake.data_root) / "pairs_animal_body_unseen.json").is_file()  # lists are built anyway


def test_missing_annotations_say_where_to_get_them(tmp_path):
    with pytest.raises(DataError, match="no MP-100 test annotation files") as info:
        build_mp100(tmp_path / "nothing", tmp_path / "images", tmp_path, progress=False)
    assert "drive.google.com" in info.value.hint


def test_malformed_annotation_files(fake):
    split1 = fake.annotations / "mp100_split1_test.json"
    coco = json.loads(split1.read_text())
    coco["annotations"][1]["category_id"] = 12345  # unknown category id (face image 1)
    skirt = next(a for a in coco["annotations"] if a["category_id"] == 1)
    skirt["keypoints"] = skirt["keypoints"][:-3]  # keypoint length mismatch (skirt image 0)
    split1.write_text(json.dumps(coco))
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=8, progress=False)
    index = load_annotations(fake.annotations)
    assert "unknown category id 12345" in " ".join(index.problems["human_face/helen/trainset/1001_1.jpg"])
    assert "keypoint length mismatch" in " ".join(index.problems["skirt/0000.jpg"])
    listed = {f for entries in _lists(fake.data_root).values() for e in entries for f in (e["src_file"], e["trg_file"])}
    assert "skirt/0000.jpg" not in listed and "human_face/helen/trainset/1001_1.jpg" not in listed

    split1.write_text("{not json")
    with pytest.raises(DataError, match=r"mp100_split1_test\.json: not valid JSON"):
        build_mp100(fake.annotations, fake.image_dir, fake.data_root, progress=False)


def test_other_category_names_are_refused(fake):
    split2 = fake.annotations / "mp100_split2_test.json"
    coco = json.loads(split2.read_text())
    next(c for c in coco["categories"] if c["id"] == 49)["name"] = "armchair"
    split2.write_text(json.dumps(coco))
    with pytest.raises(DataError, match="category id 49 is named 'armchair'"):
        build_mp100(fake.annotations, fake.image_dir, fake.data_root, progress=False)


# -- MARCO's released lists -----------------------------------------------------------------------------


def test_official_zip_is_installed_byte_for_byte(fake, tmp_path):
    lists = fake_mp100.official_lists(fake)
    zip_path = fake_mp100.write_release_zip(tmp_path / "mp100_pairs.zip", lists)
    args = ["--data-root", str(fake.data_root), "--official-zip", str(zip_path)]
    result = CliRunner().invoke(build_mp100_command, args)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(zip_path) as archive:
        for domain, spec in DOMAINS.items():
            installed = (_pairs_dir(fake.data_root) / spec.list_file).read_bytes()
            assert installed == archive.read(f"mp100_pairs/{spec.list_file}")
    manifest = json.loads((_pairs_dir(fake.data_root) / "manifest.json").read_text())
    assert manifest["kind"] == "official" and manifest["source"]["archive"] == "mp100_pairs.zip"
    assert manifest["domains"]["clothing"]["matches_marco_release"] is False
    assert "differs from MARCO's release" in result.output  # a fixture is not the release: said loudly
    assert MP100(fake.root, domain="clothing").installed_kind() == "official"


def test_official_zip_without_all_lists_is_refused(fake, tmp_path):
    lists = fake_mp100.official_lists(fake)
    del lists["furniture"]
    zip_path = fake_mp100.write_release_zip(tmp_path / "partial.zip", lists)
    with pytest.raises(DataError, match=r"partial\.zip lacks pairs_furniture\.json"):
        install_official_lists(fake.data_root, zip_path=zip_path, progress=False)
    bad = fake_mp100.official_lists(fake)
    bad["clothing"][0]["category_id"] = 40
    zip_path = fake_mp100.write_release_zip(tmp_path / "bad.zip", bad)
    with pytest.raises(DataError, match=r"pairs_clothing\.json: entry 0: unknown category"):
        install_official_lists(fake.data_root, zip_path=zip_path, progress=False)


def _serve_release(monkeypatch, server, zip_path):
    """Point the official source at the loopback server (both modules hold the constant)."""
    source = dataclasses.replace(mp100_release.OFFICIAL_PAIR_LISTS, url=server.url(zip_path.name))
    monkeypatch.setattr(mp100_release, "OFFICIAL_PAIR_LISTS", source)
    monkeypatch.setattr(mp100_reader, "OFFICIAL_PAIR_LISTS", source)


def test_official_flag_downloads_extracts_and_installs(fake, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    zip_path = fake_mp100.write_release_zip(served / "mp100_pairs.zip", fake_mp100.official_lists(fake))
    with FakeServer(served) as server:
        _serve_release(monkeypatch, server, zip_path)
        result = CliRunner().invoke(build_mp100_command, ["--data-root", str(fake.data_root), "--official", "-q"])
    assert result.exit_code == 0, result.output
    assert (fake.root / "official" / "mp100_pairs" / "pairs_furniture.json").is_file()  # the release, extracted
    manifest = json.loads((_pairs_dir(fake.data_root) / "manifest.json").read_text())
    assert manifest["kind"] == "official"
    assert manifest["source"]["archive_sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert (_pairs_dir(fake.data_root) / "pairs_furniture.json").read_bytes() == fake_mp100.encode_list(
        fake_mp100.official_lists(fake)["furniture"])


def test_prepare_downloads_the_release_when_no_lists_are_installed(fake, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    zip_path = fake_mp100.write_release_zip(served / "mp100_pairs.zip", fake_mp100.official_lists(fake))
    adapter = make_adapter(BENCHMARKS.get("mp100-animal-face"), fake.data_root)
    with FakeServer(served) as server:
        _serve_release(monkeypatch, server, zip_path)
        adapter.prepare(progress=False, download=True)
        assert len(server.requests) == 1
    assert adapter.is_available() and adapter.installed_kind() == "official"


def test_prepare_installs_an_extracted_release_without_network(fake, tmp_path):
    extracted = fake.root / "official" / "mp100_pairs"
    extracted.mkdir(parents=True)
    for domain, entries in fake_mp100.official_lists(fake).items():
        (extracted / DOMAINS[domain].list_file).write_bytes(fake_mp100.encode_list(entries))
    adapter = make_adapter(BENCHMARKS.get("mp100-home-furniture"), fake.data_root)
    assert not adapter.is_available()
    adapter.prepare(progress=False, download=False)
    assert adapter.is_available() and adapter.installed_kind() == "official"


def test_official_benchmark_refuses_rebuilt_lists(fake):
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=4, progress=False)
    adapter = make_adapter(BENCHMARKS.get("mp100-apparel"), fake.data_root)
    with pytest.raises(DataError, match="is a rebuilt list") as info:
        adapter.prepare(progress=False, download=False)
    assert "build-mp100 --official" in info.value.hint
    pairs = MP100(fake.root, domain="clothing").pairs("test").pairs  # pairs=None reads what is installed
    assert pairs and all(p.pair_id.startswith("rebuilt:") and p.meta["pair_list"] == "rebuilt" for p in pairs)


# -- the reader -----------------------------------------------------------------------------------------


def test_keypoints_are_matched_by_index_not_truncated(fake, tmp_path):
    _install_fixture_lists(fake, tmp_path)
    pairs = {p.pair_id: p for p in MP100(fake.root, domain="clothing", pairs="official").pairs("test").pairs}
    pair = pairs["official:0001:skirt/0002.jpg:skirt/0001.jpg"]  # source visibility 1101, target 1011
    src, trg = fake.image("skirt/0002.jpg"), fake.image("skirt/0001.jpg")
    np.testing.assert_array_equal(pair.src_visible, [True, True, False, True])
    np.testing.assert_array_equal(pair.trg_visible, [True, False, True, True])
    np.testing.assert_array_equal(pair.valid, [True, False, False, True])  # keypoints 0 and 3 only
    np.testing.assert_array_equal(pair.src_kps[pair.valid], np.array(src.xy)[[0, 3]])
    np.testing.assert_array_equal(pair.trg_kps[pair.valid], np.array(trg.xy)[[0, 3]])
    # MARCO's truncation would have paired source keypoint 1 with target keypoint 2 in its second row
    truncated_trg = [xy for xy, v in zip(trg.xy, trg.visible) if v]
    assert truncated_trg[1] == trg.xy[2] and tuple(pair.trg_kps[1]) != trg.xy[2]
    assert pair.trg_visible[2] and not pair.valid[2]  # target-only keypoints stay as PCK-dagger candidates
    assert pair.kp_ids == ("skirt_kp0", "skirt_kp1", "skirt_kp2", "skirt_kp3") and pair.category == "skirt"
    assert pair.src_size == (112, 80) and pair.src_image == fake.image_dir / "skirt/0002.jpg"


def test_threshold_is_the_target_box(fake, tmp_path):
    _install_fixture_lists(fake, tmp_path)
    pair = MP100(fake.root, domain="furniture").pairs("test", subset="table").pairs[0]
    target = fake.image(pair.trg_image.relative_to(fake.image_dir).as_posix())
    np.testing.assert_array_equal(pair.trg_bbox, [5, 5, 5 + target.bbox[2], 5 + target.bbox[3]])
    threshold = pck_threshold("bbox", trg_bbox=pair.trg_bbox, trg_size=pair.trg_size, trg_kps=pair.trg_kps,
                              trg_visible=pair.trg_visible)  # fmt: skip
    assert threshold == max(target.bbox[2], target.bbox[3]) == 60.0


def test_malformed_lists_and_entries_are_reported(fake, tmp_path):
    lists = fake_mp100.official_lists(fake)
    lists["animal_face"][0]["category_id"] = 66  # a category of another domain
    del lists["animal_face"][1]["trg_file"]
    # installing validates lists, so install good ones and edit one by hand afterwards, as a user could
    _install_fixture_lists(fake, tmp_path)
    path = _pairs_dir(fake.data_root) / "pairs_animal_face.json"
    path.write_bytes(fake_mp100.encode_list(lists["animal_face"]))
    result = MP100(fake.root, domain="animal_face").pairs("test")
    reasons = {(s.name, s.reason) for s in result.skipped}
    assert ("pairs_animal_face.json[0]", "unknown category") in reasons
    assert ("pairs_animal_face.json[1]", "malformed pair list entry") in reasons
    assert len(result.pairs) == len(lists["animal_face"]) - 2
    assert all(p.pair_id.startswith("unrecorded:") for p in result.pairs)  # edited: no longer the manifest's
    with pytest.raises(DataError, match=r"pairs_animal_face\.json: unknown category"):
        MP100(fake.root, domain="animal_face", strict=True).pairs("test")
    path.write_text("[{oops")
    with pytest.raises(DataError, match="malformed pair list: not valid JSON"):
        MP100(fake.root, domain="animal_face").pairs("test")


def test_malformed_annotations_skip_their_pairs(fake, tmp_path):
    _install_fixture_lists(fake, tmp_path)
    split2 = fake.annotations / "mp100_split2_test.json"
    coco = json.loads(split2.read_text())
    ann = next(a for a in coco["annotations"] if a["image_id"] == 4001)  # fennecfox image 1
    ann["keypoints"] = ann["keypoints"] + [1, 1, 2]  # one keypoint too many
    split2.write_text(json.dumps(coco))
    result = MP100(fake.root, domain="animal_face").pairs("test")
    skipped = [s for s in result.skipped if s.reason == "malformed annotation"]
    assert len(skipped) == 2 and "keypoint length mismatch: 5 keypoints" in skipped[0].detail
    with pytest.raises(DataError, match="malformed annotation"):
        MP100(fake.root, domain="animal_face", strict=True).pairs("test")


def test_a_keypoint_far_off_its_image_skips_the_pair_naming_the_annotation_file(fake, tmp_path):
    _install_fixture_lists(fake, tmp_path)
    split2 = fake.annotations / "mp100_split2_test.json"
    coco = json.loads(split2.read_text())
    fox1 = next(a for a in coco["annotations"] if a["image_id"] == 4001)  # fennecfox_face/0001.jpg, 104 x 80
    fox1["keypoints"][0:2] = [1e9, -5]
    split2.write_text(json.dumps(coco))
    result = MP100(fake.root, domain="animal_face").pairs("test")
    skipped = [s for s in result.skipped if s.reason == "keypoint off the image"]
    assert len(skipped) == 2 and {s.file for s in skipped} == {str(split2)}  # image 1 is the target of two
    assert "keypoint 0 at (1e+09, -5) lies outside the 104x80 image" in skipped[0].detail
    with pytest.raises(DataError, match=r"mp100_split2_test\.json: keypoint off the image"):
        MP100(fake.root, domain="animal_face", strict=True).pairs("test")


def test_options_are_checked(fake):
    with pytest.raises(ConfigError, match="unknown MP-100 domain"):
        MP100(fake.root, domain="apparel")
    with pytest.raises(ConfigError, match="pairs='mine'"):
        MP100(fake.root, domain="clothing", pairs="mine")
    with pytest.raises(ConfigError, match="only the 'test' split"):
        MP100(fake.root, domain="clothing").pairs("trn")


def test_missing_data_says_where_to_get_it(tmp_path):
    adapter = make_adapter(BENCHMARKS.get("mp100-human-face"), tmp_path)
    with pytest.raises(DataError, match="MP-100 data not found") as info:
        adapter.prepare(progress=False, download=False)
    assert "drive.google.com" in info.value.hint and "build-mp100" in info.value.hint


# -- the five benchmarks end to end ---------------------------------------------------------------------


def _run(root, tmp_path, method, benchmark):
    return run(RunOptions(method=method, benchmark=benchmark, data_root=root, out=tmp_path / "r", progress=False,
                          download=False)).result  # fmt: skip


def _expected_counts(fake, entries):
    points = 0
    for e in entries:
        src, trg = fake.image(e["src_file"]), fake.image(e["trg_file"])
        points += sum(a and b for a, b in zip(src.visible, trg.visible))
    return len(entries), points


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_oracle_scores_100_on_every_benchmark(fake, tmp_path, domain):
    _install_fixture_lists(fake, tmp_path)
    result = _run(fake.data_root, tmp_path, "oracle", BENCHMARK_OF[domain])
    pairs, points = _expected_counts(fake, fake_mp100.official_lists(fake)[domain])
    assert (result["counts"]["pairs"], result["counts"]["points"]) == (pairs, points)
    for by in ("image", "point"):
        assert [result["metrics"]["pck"][by]["all"][a] for a in ALPHAS] == [100.0] * 5
    assert result["benchmark"]["adapter_options"] == {"domain": domain, "pairs": "official"}
    assert result["benchmark"]["protocol"]["threshold"] == "bbox" and result["benchmark"]["data_dir"] == "MP-100"


@pytest.mark.parametrize("domain", list(DOMAINS))
def test_known_offset_gives_the_hand_computed_pck(fake, tmp_path, domain):
    _install_fixture_lists(fake, tmp_path)
    method = OFFSET_MATCHER
    result = _run(fake.data_root, tmp_path, method, BENCHMARK_OF[domain])
    entries = fake_mp100.official_lists(fake)[domain]
    # every queried point is 5 px off; a pair is all right or all wrong: right when 5 <= alpha * T(target)
    thresholds = [fake.image(e["trg_file"]).threshold for e in entries]
    expected = [100.0 * np.mean([5.0 <= float(a) * t for t in thresholds]) for a in ALPHAS]
    assert [result["metrics"]["pck"]["image"]["all"][a] for a in ALPHAS] == pytest.approx(expected)
    if domain == "clothing":  # targets j = 1, 1, 0 per category: T = 60, 60, 40
        assert [result["metrics"]["pck"]["image"]["all"][a] for a in ALPHAS] == pytest.approx(
            [0.0, 0.0, 200 / 3, 100.0, 100.0])


def test_marcos_arrangement_is_read_built_into_and_recorded(tmp_path):
    fake = fake_mp100.make_mp100(tmp_path / "data", layout="marco")  # mp100_all/{annotations,mp100}
    _install_fixture_lists(fake, tmp_path)
    assert (fake.root / "pairs" / "pairs_human_face.json").is_file() and not (tmp_path / "data" / "MP-100").exists()
    result = _run(fake.data_root, tmp_path, "oracle", "mp100-apparel")
    pairs, _ = _expected_counts(fake, fake_mp100.official_lists(fake)["clothing"])
    assert result["counts"]["pairs"] == pairs and not result["counts"]["skipped"]
    assert result["benchmark"]["data"] == {"layout": "marco", "folder": str(fake.root)}
    # the command's defaults follow the arrangement too
    out = CliRunner().invoke(build_mp100_command, ["--data-root", str(fake.data_root), "-q"])
    assert out.exit_code == 0, out.output
    assert f"written: {fake.root / 'pairs'} (rebuilt" in out.output and "note:" not in out.output


def test_missing_images_become_skipped_pairs(fake, tmp_path):
    _install_fixture_lists(fake, tmp_path)
    (fake.image_dir / "fly_body" / "0001.jpg").unlink()
    result = _run(fake.data_root, tmp_path, "oracle", "mp100-animal-body")
    entries = fake_mp100.official_lists(fake)["animal_body_unseen"]
    gone = [e for e in entries if "fly_body/0001.jpg" in (e["src_file"], e["trg_file"])]
    assert len(gone) == 2 and result["counts"]["skipped"] == {"missing image": 2}
    assert result["counts"]["pairs"] == len(entries) - 2
    assert result["metrics"]["pck"]["image"]["all"]["0.01"] == 100.0


def test_rebuilt_lists_are_byte_identical_to_the_lists_built_before(fake):
    # The digest of this folder as the builder wrote it before issue 12 moved it into datasets/mp100/ (measured on
    # that code): the five lists and the manifest must not change.
    build_mp100(fake.annotations, fake.image_dir, fake.data_root, pairs_per_domain=8, progress=False)
    digest = hashlib.sha256()
    for path in sorted(_pairs_dir(fake.data_root).iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    assert digest.hexdigest() == "8ec32ce0d450d20d1d85df49c87ab7941b4203b7a5b435a32d8fad25c3dab33a"
