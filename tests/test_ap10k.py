"""AP-10K: the deterministic builder (GeoAware-SC's protocol), the pair-folder reader, and the three benchmarks.

Fixtures are generated raw AP-10K downloads (``fake_ap10k``); expectations are worked out from the fixture's own
description, never from the code under test.
"""

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import fake_ap10k
from fake_server import FakeServer, closed_port_url
from offset_matcher import OFFSET_MATCHER
from corrbench.cli import build_ap10k_command
from corrbench.datasets.ap10k import layout as ap10k_layout
from corrbench.datasets.ap10k.adapter import AP10K
from corrbench.datasets.ap10k.build import build_ap10k
from corrbench.datasets.ap10k.layout import DRIVE_ID, KEYPOINT_NAMES, crowd_rule_of
from corrbench.datasets.ap10k.pairs import split_species
from corrbench.errors import ConfigError, DataError
from corrbench.evaluate import RunOptions, run

ALPHAS = ["0.01", "0.05", "0.1", "0.15", "0.2"]
PUBLISHED_CROWD_LIST = ap10k_layout.CROWD_LIST_SOURCE  # before any fixture points it at a local server
SETTINGS = {"ap10k-intra-species": "test", "ap10k-cross-species": "test_cross_species",
            "ap10k-cross-family": "test_cross_family"}


@contextmanager
def serving_crowd_list(data: fake_ap10k.FakeAP10K, source=None):
    """Stand in for GeoAware-SC's server: serve ``data``'s crowd list on loopback and pin CROWD_LIST_SOURCE to
    it (its URL, size and sha256), so that a default build downloads it as it would the real one."""
    with tempfile.TemporaryDirectory() as folder, FakeServer(Path(folder)) as server, \
            pytest.MonkeyPatch.context() as patch:
        listed = Path(folder) / "ap-10k_is_crowd.txt"
        listed.write_text(data.crowd_list(), newline="\n")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            patch.delenv(var, raising=False)
        pinned = replace(ap10k_layout.CROWD_LIST_SOURCE, url=server.url(listed.name), size=listed.stat().st_size,
                         sha256=hashlib.sha256(listed.read_bytes()).hexdigest())
        patch.setattr(ap10k_layout, "CROWD_LIST_SOURCE", source or pinned)
        yield server


@pytest.fixture(scope="module", autouse=True)
def published_list():
    """The default fixture's crowd list is "published" in every test (tests of other fixtures nest their own);
    one server for the module, so that builds record the same list URL."""
    with serving_crowd_list(fake_ap10k.default_dataset()) as server:
        yield server


@pytest.fixture(scope="module")
def built(tmp_path_factory, published_list):
    """(data root, fake dataset, manifest): the default fixture built with the small rules."""
    base = tmp_path_factory.mktemp("ap10k")
    data = fake_ap10k.write_raw(base / "raw")
    manifest = build_ap10k(base / "raw", base / "data" / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES)
    return base / "data", data, manifest


def _entries(folder: Path) -> list[str]:
    """What a build left in ``folder``, besides the crowd list it downloaded there (and its download record)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (".downloads", "ap-10k_is_crowd.txt"))


def _copy_build(built, tmp_path) -> Path:
    import shutil

    target = tmp_path / "data" / "AP-10K"
    shutil.copytree(built[0] / "AP-10K", target)
    return target


def _passes(a: fake_ap10k.FakeImage, b: fake_ap10k.FakeImage) -> bool:
    """The reference's mutual score sum_k (v_a/2)(v_b/2) >= 3."""
    return sum((va / 2) * (vb / 2) for va, vb in zip(a.visibility, b.visibility)) >= 3


def _pairs_in(folder: Path) -> list[tuple[int, int, str]]:
    out = []
    for path in sorted(folder.glob("*.json")):
        ids, _, category = path.stem.rpartition(":")
        src, trg = ids.split("-")
        out.append((int(src), int(trg), category))
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------- split rules


@pytest.mark.parametrize("count, sizes", [(60, (10, 20, 30)), (51, (1, 20, 30)), (50, (0, 20, 30)),
                                          (45, (0, 15, 30)), (30, (0, 0, 30)), (7, (0, 0, 7)), (0, (0, 0, 0))])
def test_last_30_test_previous_20_val_rest_train(count, sizes):
    train, val, test = split_species(list(range(count)))
    assert (len(train), len(val), len(test)) == sizes
    assert train + val + test == list(range(count))  # in order: test is the tail, val just before it


def test_default_rules_split_a_species_by_image_id(tmp_path):
    data = fake_ap10k.many_images_of_one_species(55)
    fake_ap10k.write_raw(tmp_path / "raw", data)
    with serving_crowd_list(data):  # no image on its list: an empty file
        manifest = build_ap10k(tmp_path / "raw", tmp_path / "AP-10K", progress=False)
    assert manifest["crowd"]["ids"] == 0
    folder = tmp_path / "AP-10K" / "ImageAnnotation" / "Felidae" / "cat"

    def ids(name):
        return [int(Path(line).stem) for line in (folder / name).read_text().splitlines()]

    assert ids("train_filtered.txt") == list(range(1, 6))
    assert ids("val_filtered.txt") == list(range(6, 26))
    assert ids("test_filtered.txt") == list(range(26, 56))
    # every regular pair shares enough keypoints: val/test keep all pairs, trn all 10 (cap 50 x 5 = 250)
    assert manifest["statistics"]["pairs"]["intra-species"] == {"trn": 10, "val": 190, "test": 435}
    assert manifest["statistics"]["species"] == 5 and manifest["statistics"]["families"] == 3


def test_species_lists_drop_crowd_and_few_keypoints_and_split_by_id(built):
    root, data, manifest = built
    for family, species_names in fake_ap10k.FAMILIES.items():
        for species in species_names:
            kept = [i.image_id for i in data.kept(species)]
            expected = split_species(kept, 3, 2)
            folder = root / "AP-10K" / "ImageAnnotation" / family / species
            for name, ids in zip(("train_filtered.txt", "val_filtered.txt", "test_filtered.txt"), expected):
                assert [int(Path(p).stem) for p in (folder / name).read_text().splitlines()] == ids
    stats = manifest["statistics"]["per_species"]
    assert stats["cat"]["crowd"] == 1 and stats["dog"]["too_few_keypoints"] == 1
    assert stats["cat"] == {"family": "Felidae", "annotated": 11, "crowd": 1, "too_few_keypoints": 0,
                            "trn": 5, "val": 2, "test": 3}


def test_image_annotation_is_the_first_annotation_merged_with_the_image(built):
    root, data, _ = built
    crowd = next(i for i in data.images if i.extra_annotations)
    name = f"Felidae/cat/{crowd.image_id:012d}"
    record = json.loads((root / "AP-10K" / "ImageAnnotation" / f"{name}.json").read_text())
    assert record["keypoints"] == crowd.keypoints  # not the second annotation's zeros
    assert record["id"] == crowd.image_id and record["image_id"] == crowd.image_id  # image fields win
    assert (record["name"], record["supercategory"], record["is_crowd"]) == ("cat", "Felidae", 1)
    assert (record["width"], record["height"], record["bbox"]) == (*crowd.size, crowd.bbox)
    raw_jpeg = built[0].parent / "raw" / "data" / f"{crowd.image_id:012d}.jpg"
    assert (root / "AP-10K" / "JPEGImages" / f"{name}.jpg").read_bytes() == raw_jpeg.read_bytes()


# ---------------------------------------------------------------------------------------------- pair rules


def _lists(data, split_index, rules=fake_ap10k.SMALL_RULES):
    return {s: split_species(data.kept(s), rules.test_per_species, rules.val_per_species)[split_index]
            for s in fake_ap10k.CATEGORY_IDS}


@pytest.mark.parametrize("split, index", [("val", 1), ("test", 2)])
def test_val_and_test_keep_every_pair_that_shares_three_keypoints(built, split, index):
    root, data, _ = built
    pairs = _pairs_in(root / "AP-10K" / "PairAnnotation" / split)
    expected = {(frozenset((a.image_id, b.image_id)), s)
                for s, images in _lists(data, index).items() for a, b in combinations(images, 2) if _passes(a, b)}
    assert {(frozenset((s, t)), c) for s, t, c in pairs} == expected
    assert len(pairs) == len(expected)  # one direction per pair
    if split == "test":  # the sparse lion (3 keypoints) fails with some partners: fewer than all 3 pairs
        assert 0 < len([p for p in pairs if p[2] == "lion"]) < 3


def test_training_pairs_are_capped_per_image(built):
    root, data, _ = built
    pairs = _pairs_in(root / "AP-10K" / "PairAnnotation" / "trn")
    by_id = data.by_id()
    for species, images in _lists(data, 0).items():
        candidates = [(a, b) for a, b in combinations(images, 2) if _passes(a, b)]
        mine = [p for p in pairs if p[2] == species]
        assert len(mine) == min(1 * len(images), len(candidates))  # cat: 5 of 10
        assert all(_passes(by_id[s], by_id[t]) and by_id[s] in images and by_id[t] in images for s, t, _ in mine)
    assert len([p for p in pairs if p[2] == "cat"]) == 5


def test_cross_species_pairs_are_within_a_family_capped_and_randomly_directed(built):
    root, data, _ = built
    by_id = data.by_id()
    test = _lists(data, 2)
    pairs = _pairs_in(root / "AP-10K" / "PairAnnotation" / "test_cross_species")
    for family, species in fake_ap10k.FAMILIES.items():
        mine = [(by_id[s], by_id[t]) for s, t, c in pairs if c == family]
        if len(species) == 1:
            assert mine == []
            continue
        candidates = [(a, b) for a, b in ((a, b) for a in test[species[0]] for b in test[species[1]]) if _passes(a, b)]
        assert len(mine) == min(5, len(candidates))
        assert all(a.species != b.species and {a.species, b.species} <= set(species) and _passes(a, b) for a, b in mine)
        assert all(a in test[a.species] and b in test[b.species] for a, b in mine)
    # the swap is applied (GeoAware-SC's notebook discards it): sources come from both species of a family
    assert {by_id[s].species for s, _, _ in pairs} == {"arctic fox", "dog", "cat", "lion"}


def test_cross_family_pairs_are_capped_per_family_pair(built):
    root, data, _ = built
    by_id = data.by_id()
    family_of = {s: f for f, species in fake_ap10k.FAMILIES.items() for s in species}
    pairs = _pairs_in(root / "AP-10K" / "PairAnnotation" / "test_cross_family")
    assert {c for _, _, c in pairs} == {"all"}
    counts = {}
    for s, t, _ in pairs:
        key = (family_of[by_id[s].species], family_of[by_id[t].species])
        assert key[0] < key[1] and _passes(by_id[s], by_id[t])  # source from the first family, sorted
        counts[key] = counts.get(key, 0) + 1
    assert counts == {("Canidae", "Felidae"): 4, ("Canidae", "Ursidae"): 4, ("Felidae", "Ursidae"): 4}
    val = _pairs_in(root / "AP-10K" / "PairAnnotation" / "val_cross_family")
    assert len(val) == 3  # cap 1 per family pair


def test_pair_files_point_at_image_annotations_relative_to_the_dataset(built):
    root = built[0] / "AP-10K"
    path = next((root / "PairAnnotation" / "test").glob("*.json"))
    content = json.loads(path.read_text())
    assert set(content) == {"src_json_path", "trg_json_path"}
    for value in content.values():
        assert value.startswith("ImageAnnotation/") and (root / value).is_file()
    src, trg = path.stem.rpartition(":")[0].split("-")
    assert Path(content["src_json_path"]).stem == src and Path(content["trg_json_path"]).stem == trg


# ------------------------------------------------------------------------------------------- determinism


def test_building_twice_gives_byte_identical_output(built, tmp_path):
    first = _tree(built[0] / "AP-10K")
    again = build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES)
    assert _tree(tmp_path / "AP-10K") == first
    assert again == built[2]
    build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES)
    assert _tree(tmp_path / "AP-10K") == first  # rebuilt in place, atomically
    assert _entries(tmp_path) == ["AP-10K"]  # no temporary folder left behind


def test_another_seed_changes_the_sampled_pairs_only(built, tmp_path):
    other = build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", seed=7, progress=False,
                        rules=fake_ap10k.SMALL_RULES)
    assert other["pair_list_sha256"] != built[2]["pair_list_sha256"] and other["seed"] == 7
    lists = [p.relative_to(tmp_path) for p in tmp_path.rglob("*_filtered.txt")]
    assert all((tmp_path / p).read_text() == (built[0] / p).read_text() for p in lists) and lists


def test_another_crowd_list_is_used_recorded_and_warned_about(built, tmp_path, caplog):
    data = built[1]
    crowd = next(i for i in data.images if i.extra_annotations)
    listed = next(i for i in data.kept("dog"))
    (tmp_path / "crowd.txt").write_text(f"{listed.image_id:012d}\n\n")
    manifest = build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", progress=False,
                           rules=fake_ap10k.SMALL_RULES, crowd_list=tmp_path / "crowd.txt")
    assert manifest["crowd"]["rule"] == "other-list" and manifest["crowd"]["ids"] == 1
    assert manifest["crowd"]["source"] == str(tmp_path / "crowd.txt")
    assert manifest["crowd"]["agreement"] == {"listed_and_derived": 0, "listed_only": 1, "derived_only": 1}
    folder = tmp_path / "AP-10K" / "ImageAnnotation"
    lists = "".join(p.read_text() for p in folder.rglob("*_filtered.txt"))
    assert f"{listed.image_id:012d}" not in lists and f"{crowd.image_id:012d}" in lists
    assert "not GeoAware-SC's published list" in caplog.text and "crowd.txt" in caplog.text


def test_path_prefix_writes_paths_the_reference_loaders_open(built, tmp_path):
    manifest = build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", progress=False,
                           rules=fake_ap10k.SMALL_RULES, path_prefix="data/ap-10k/")
    assert manifest["pair_list_sha256"] == built[2]["pair_list_sha256"] and manifest["path_prefix"] == "data/ap-10k/"
    pair = json.loads(next((tmp_path / "AP-10K" / "PairAnnotation" / "test").glob("*.json")).read_text())
    assert pair["src_json_path"].startswith("data/ap-10k/ImageAnnotation/")
    assert _read_all(tmp_path / "AP-10K") == _read_all(built[0] / "AP-10K")
    with pytest.raises(DataError, match="must use '/' and end with '/'"):
        build_ap10k(built[0].parent / "raw", tmp_path / "other", path_prefix="data/ap-10k")


def test_malformed_crowd_list_names_the_line(built, tmp_path):
    (tmp_path / "crowd.txt").write_text("000000000001\nnot-an-id\n")
    with pytest.raises(DataError, match=r"crowd\.txt, line 2: 'not-an-id' is not an image id"):
        build_ap10k(built[0].parent / "raw", tmp_path / "AP-10K", progress=False, crowd_list=tmp_path / "crowd.txt")


# ------------------------------------------------------------------------------------------ crowd rules


def _split_ids(dataset: Path, family: str, species: str) -> dict[str, list[int]]:
    folder = dataset / "ImageAnnotation" / family / species
    return {name.split("_")[0]: [int(Path(line).stem) for line in (folder / name).read_text().splitlines()]
            for name in ("train_filtered.txt", "val_filtered.txt", "test_filtered.txt")}


@pytest.fixture
def disagreeing(tmp_path):
    """A raw download where the two crowd rules disagree both ways (see fake_ap10k.crowd_rules_disagree)."""
    data = fake_ap10k.crowd_rules_disagree()
    fake_ap10k.write_raw(tmp_path / "raw", data)
    with serving_crowd_list(data) as server:
        yield tmp_path, data, server


def test_default_build_drops_the_published_list_images_as_the_papers_builds(disagreeing, caplog):
    """Without options: the list is downloaded (here from the stand-in server) and its images dropped, so the
    test lists are the reference scripts' (the image with two animals stays, the listed single one goes)."""
    tmp_path, data, server = disagreeing
    manifest = build_ap10k(tmp_path / "raw", tmp_path / "data" / "AP-10K", progress=False,
                           rules=fake_ap10k.SMALL_RULES)
    assert _split_ids(tmp_path / "data" / "AP-10K", "Felidae", "cat") == {
        "train": [1, 2, 3, 4], "val": [5, 6], "test": [7, 8, 20]}
    assert [i.image_id for i in data.kept("cat")] == [1, 2, 3, 4, 5, 6, 7, 8, 20]
    crowd = manifest["crowd"]
    assert crowd["rule"] == "published-list" and crowd["source"] == ap10k_layout.CROWD_LIST_SOURCE.url
    assert crowd["ids"] == 2 and crowd["list_sha256"] == ap10k_layout.CROWD_LIST_SOURCE.sha256
    assert crowd["agreement"] == {"listed_and_derived": 1, "listed_only": 1, "derived_only": 1}
    assert [path for path, _ in server.requests] == ["/ap-10k_is_crowd.txt"]
    assert (tmp_path / "data" / "ap-10k_is_crowd.txt").read_text() == data.crowd_list()
    listed = json.loads((tmp_path / "data" / "AP-10K" / "ImageAnnotation/Felidae/cat/000000000021.json").read_text())
    assert listed["is_crowd"] == 1
    assert "warning" not in caplog.text
    again = build_ap10k(tmp_path / "raw", tmp_path / "data" / "again", progress=False, rules=fake_ap10k.SMALL_RULES)
    assert again["pair_list_sha256"] == manifest["pair_list_sha256"] and len(server.requests) == 1  # kept


def test_derived_rule_is_explicit_gives_other_test_lists_and_warns(disagreeing, caplog):
    tmp_path, data, server = disagreeing
    manifest = build_ap10k(tmp_path / "raw", tmp_path / "data" / "AP-10K", progress=False,
                           rules=fake_ap10k.SMALL_RULES, crowd_rule="derived")
    assert _split_ids(tmp_path / "data" / "AP-10K", "Felidae", "cat") == {
        "train": [1, 2, 3, 4], "val": [5, 6], "test": [7, 8, 21]}
    assert [i.image_id for i in data.kept("cat", crowd="derived")] == [1, 2, 3, 4, 5, 6, 7, 8, 21]
    assert manifest["crowd"]["rule"] == "derived" and manifest["crowd"]["ids"] == 2
    assert server.requests == []  # the list is not needed
    assert "AP-10K crowd images were derived from the annotations" in caplog.text
    assert "differ from those of GeoAware-SC, MARCO and the papers" in caplog.text
    with pytest.raises(ConfigError, match="exclude each other"):
        build_ap10k(tmp_path / "raw", tmp_path / "x", crowd_rule="derived", crowd_list=tmp_path / "list.txt")
    with pytest.raises(ConfigError, match="unknown crowd rule 'multi'"):
        build_ap10k(tmp_path / "raw", tmp_path / "x", crowd_rule="multi")


def test_published_list_given_as_a_file_builds_the_same(disagreeing):
    tmp_path, data, server = disagreeing
    (tmp_path / "copy.txt").write_text(data.crowd_list())
    first = build_ap10k(tmp_path / "raw", tmp_path / "a" / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES)
    second = build_ap10k(tmp_path / "raw", tmp_path / "b" / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES,
                         crowd_list=tmp_path / "copy.txt")
    assert second["crowd"]["rule"] == "published-list" and second["crowd"]["source"] == str(tmp_path / "copy.txt")
    assert second["pair_list_sha256"] == first["pair_list_sha256"]
    assert _split_ids(tmp_path / "b" / "AP-10K", "Felidae", "cat") == _split_ids(tmp_path / "a" / "AP-10K",
                                                                               "Felidae", "cat")


def test_a_changed_copy_of_the_published_list_is_refused(disagreeing):
    tmp_path, data, _ = disagreeing
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ap-10k_is_crowd.txt").write_text("000000000021\n")  # edited by hand
    with pytest.raises(DataError, match="is not GeoAware-SC's published crowd list") as failure:
        build_ap10k(tmp_path / "raw", tmp_path / "data" / "AP-10K", progress=False)
    assert "--crowd-list" in failure.value.hint


def test_offline_build_says_where_the_list_goes_and_the_alternatives(tmp_path):
    fake_ap10k.write_raw(tmp_path / "raw")
    offline = replace(ap10k_layout.CROWD_LIST_SOURCE, url=closed_port_url("ap-10k_is_crowd.txt"))
    with serving_crowd_list(fake_ap10k.default_dataset(), source=offline):
        with pytest.raises(DataError, match="could not download .*ap-10k_is_crowd.txt") as failure:
            build_ap10k(tmp_path / "raw", tmp_path / "data" / "AP-10K", progress=False)
    hint = failure.value.hint
    assert str(tmp_path / "data" / ".downloads" / "ap-10k_is_crowd.txt") in hint
    assert "--crowd-list PATH" in hint and "--crowd-rule derived" in hint
    assert not (tmp_path / "data" / "AP-10K").exists()


def test_the_crowd_rule_of_older_manifests():
    pinned = ap10k_layout.CROWD_LIST_SOURCE.sha256
    assert crowd_rule_of({"crowd": {"rule": "derived: more than one annotation in the merged split1 files, or "
                                            "iscrowd = 1"}}) == "derived"
    assert crowd_rule_of({"crowd": {"rule": "list", "list_sha256": pinned}}) == "published-list"
    assert crowd_rule_of({"crowd": {"rule": "list", "list_sha256": "0" * 64}}) == "other-list"
    assert crowd_rule_of(None) == "not recorded" and crowd_rule_of({"seed": 42}) == "not recorded"


def test_results_record_the_crowd_rule_and_warn_when_it_is_not_the_list(disagreeing, caplog):
    tmp_path, _, _ = disagreeing
    for rule, recorded in (("list", "published-list"), ("derived", "derived")):
        root = tmp_path / rule
        manifest = build_ap10k(tmp_path / "raw", root / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES,
                               crowd_rule=rule)
        caplog.clear()
        result = run(RunOptions(method="oracle", benchmark="ap10k-intra-species", data_root=root,
                                out=tmp_path / "results", progress=False, download=False)).result
        data = result["benchmark"]["data"]
        assert data["crowd_rule"] == recorded and data["pair_list_sha256"] == manifest["pair_list_sha256"]
        assert data["seed"] == 42
        assert ("derived from the annotations" in caplog.text) == (rule == "derived")
        # the result keeps the warning (tables repeat it), the papers' build has none
        assert ("derived from the annotations" in data.get("warning", "")) == (rule == "derived")
        assert all(r.levelno == logging.WARNING for r in caplog.records if "crowd" in r.getMessage())


# ------------------------------------------------------------------------------------ malformed raw input


@pytest.fixture
def raw(tmp_path):
    fake_ap10k.write_raw(tmp_path / "raw")
    return tmp_path / "raw"


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_bad_coco_json_names_the_file(raw, tmp_path):
    (raw / "annotations" / "ap10k-test-split1.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"ap10k-test-split1\.json: not valid JSON"):
        build_ap10k(raw, tmp_path / "AP-10K", progress=False)
    (raw / "annotations" / "ap10k-test-split1.json").write_text('{"images": [], "categories": []}')
    with pytest.raises(DataError, match=r"field 'annotations' is missing or not a list"):
        build_ap10k(raw, tmp_path / "AP-10K", progress=False)


def test_keypoint_count_other_than_17_x_3_is_an_error(raw, tmp_path):
    _edit(raw / "annotations" / "ap10k-val-split1.json", lambda d: d["annotations"][0]["keypoints"].pop())
    with pytest.raises(DataError, match=r"ap10k-val-split1\.json: annotation \d+ \(image \d+\): field 'keypoints' "
                                        r"must hold 17 x 3 = 51 numbers .*got 50"):
        build_ap10k(raw, tmp_path / "AP-10K", progress=False)


def test_missing_image_is_an_error_and_an_old_build_survives(raw, tmp_path, built):
    target = _copy_build(built, tmp_path)
    before = _tree(target)
    (raw / "data" / "000000000007.jpg").unlink()
    with pytest.raises(DataError, match=r"1 annotated AP-10K image\(s\) missing .*000000000007\.jpg"):
        build_ap10k(raw, target, progress=False)
    assert _tree(target) == before
    assert _entries(target.parent) == ["AP-10K"]


def test_missing_download_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="AP-10K annotations not found") as info:
        build_ap10k(tmp_path / "nothing", tmp_path / "AP-10K", progress=False)
    assert DRIVE_ID in info.value.hint


def test_unzipped_folder_with_its_top_level_ap10k_folder_is_accepted(tmp_path):
    fake_ap10k.write_raw(tmp_path / "download" / "ap-10k")
    manifest = build_ap10k(tmp_path / "download", tmp_path / "AP-10K", progress=False, rules=fake_ap10k.SMALL_RULES)
    assert manifest["statistics"]["species"] == 5


# ------------------------------------------------------------------------------------------------ the reader


def _read_all(root: Path, **options):
    out = {}
    for setting in ("intra-species", "cross-species", "cross-family"):
        for split in ("val", "test"):
            pairset = AP10K(root, setting=setting, **options).pairs(split)
            out[setting, split] = [(p.pair_id, p.src_image.relative_to(root), p.trg_image.relative_to(root),
                                    p.src_kps.tolist(), p.trg_kps.tolist(), p.valid.tolist(), p.trg_bbox.tolist())
                                   for p in pairset.pairs]
    return out


def test_reader_gives_pairs_with_boxes_sizes_and_names(built):
    root, data, _ = built
    by_id = data.by_id()
    pairset = AP10K(root / "AP-10K").pairs("test")
    assert pairset.skipped == []
    assert [p.category for p in pairset.pairs] == sorted(p.category for p in pairset.pairs)
    pair = next(p for p in pairset.pairs if p.category == "cat")
    src_id, trg_id = (int(i) for i in pair.pair_id.rpartition(":")[0].split("-"))
    x, y, w, h = by_id[trg_id].bbox
    np.testing.assert_array_equal(pair.trg_bbox, [x, y, x + w, y + h])
    assert pair.trg_size == by_id[trg_id].size and pair.src_size == by_id[src_id].size
    np.testing.assert_array_equal(pair.trg_kps, np.asarray(by_id[trg_id].keypoints).reshape(17, 3)[:, :2])
    assert pair.kp_ids == KEYPOINT_NAMES and len(pair.kp_ids) == 17
    assert pair.src_image == root / "AP-10K" / "JPEGImages" / "Felidae" / "cat" / f"{src_id:012d}.jpg"
    assert pair.src_image.is_file() and pair.meta["trg_family"] == "Felidae"


@pytest.mark.parametrize("style", ["geoaware", "marco"])
def test_reads_folders_written_by_the_reference_scripts(built, tmp_path, style):
    target = _copy_build(built, tmp_path)
    expected = _read_all(target)
    fake_ap10k.rewrite_pair_paths(target, style)
    sample = json.loads(next((target / "PairAnnotation" / "test").glob("*.json")).read_text())
    assert sample["src_json_path"].startswith("data/ap-10k/" if style == "geoaware" else "/home/someone/")
    assert _read_all(target) == expected and expected[("intra-species", "test")]
    assert AP10K(target).pairs("test").notes == {"crowd_rule": "not recorded"}


def test_visibility_rules(built):
    root, data, _ = built
    by_id = data.by_id()
    for rule, visible in (("v>0", lambda v: v > 0), ("v==2", lambda v: v == 2)):
        pairset = AP10K(root / "AP-10K", visibility=rule).pairs("test")
        listed = _pairs_in(root / "AP-10K" / "PairAnnotation" / "test")
        expected = {}
        for s, t, c in listed:
            mask = [visible(a) and visible(b) for a, b in zip(by_id[s].visibility, by_id[t].visibility)]
            expected[f"{s:012d}-{t:012d}:{c}"] = mask
        assert {p.pair_id: p.valid.tolist() for p in pairset.pairs} == {k: m for k, m in expected.items() if any(m)}
        skipped = sorted(s.name for s in pairset.skipped)
        assert skipped == sorted(k for k, m in expected.items() if not any(m))
        assert all(s.reason == "no valid keypoint" for s in pairset.skipped)
        if rule == "v==2":  # the all-v=1 bear: its pairs are skipped, not an error even in strict mode
            assert skipped and all(":black bear" in name for name in skipped)
            assert len(AP10K(root / "AP-10K", visibility=rule, strict=True).pairs("test").skipped) == len(skipped)
        else:
            assert skipped == []
    with pytest.raises(ConfigError, match="visibility rule"):
        AP10K(root / "AP-10K", visibility="v>=1")


def test_splits_subsets_and_training_exclusions(built, tmp_path):
    target = _copy_build(built, tmp_path)
    trn = target / "PairAnnotation" / "trn"
    cat_pair = next(trn.glob("*:cat.json"))
    (trn / cat_pair.name.replace(":cat", ":black bear")).write_text(cat_pair.read_text())
    names = {p.category for p in AP10K(target).pairs("trn").pairs}
    assert names == {"cat"}  # black bear is one of the three species training skips (dog, lion: 1 image)
    assert {p.category for p in AP10K(target).pairs("test", subset="dog, lion").pairs} == {"dog", "lion"}
    assert {p.category for p in AP10K(target, setting="cross-species").pairs("val").pairs} <= {"Canidae", "Felidae"}
    with pytest.raises(ConfigError, match="no split 'trn'"):
        AP10K(target, setting="cross-family").pairs("trn")
    with pytest.raises(ConfigError, match="unknown AP-10K setting"):
        AP10K(target, setting="cross-genus")


def test_malformed_pair_folder_is_reported_per_pair(built, tmp_path):
    target = _copy_build(built, tmp_path)
    folder = target / "PairAnnotation" / "test"
    files = sorted(folder.glob("*.json"))
    by_category = {}
    for path in files:
        by_category.setdefault(path.stem.rpartition(":")[2], []).append(path)
    by_category["arctic fox"][0].write_text("{not json")
    by_category["black bear"][0].write_text(json.dumps({"src_json_path": "elsewhere/1.json", "trg_json_path": 3}))
    dog = json.loads(by_category["dog"][0].read_text())
    _edit(target / dog["trg_json_path"], lambda d: d["keypoints"].pop())  # 50 values
    cat = json.loads(by_category["cat"][0].read_text())
    (target / cat["src_json_path"].replace("ImageAnnotation", "JPEGImages").replace(".json", ".jpg")).unlink()
    lion = json.loads(by_category["lion"][0].read_text())
    (target / lion["src_json_path"]).unlink()

    pairset = AP10K(target).pairs("test")
    reasons = {s.name.rpartition(":")[2]: (s.reason, s.detail) for s in pairset.skipped}
    assert reasons["arctic fox"][0] == "malformed pair file" and "JSON" in reasons["arctic fox"][1]
    assert reasons["black bear"][0] == "malformed pair file" and "ImageAnnotation/" in reasons["black bear"][1]
    assert reasons["dog"][0] == "malformed image annotation" and "51 numbers" in reasons["dog"][1]
    assert reasons["cat"][0] == "missing image" and reasons["lion"][0] == "missing image annotation"
    assert len(pairset.pairs) + len(pairset.skipped) == len(files)
    with pytest.raises(DataError, match=r"\.json: malformed pair file"):
        AP10K(target, strict=True).pairs("test")


def test_missing_benchmark_explains_the_download_and_the_build(tmp_path):
    adapter = AP10K(tmp_path / "AP-10K")
    with pytest.raises(DataError, match="AP-10K data not found") as info:
        adapter.prepare(download=True)
    assert DRIVE_ID in info.value.hint and "corrbench build-ap10k" in info.value.hint
    assert "AP-10K-raw/annotations/ap10k-train-split1.json" in info.value.hint
    fake_ap10k.write_raw(tmp_path / "AP-10K-raw")
    with pytest.raises(DataError) as info:
        adapter.prepare(download=True)
    assert "is not built: run `corrbench build-ap10k" in info.value.hint


# ------------------------------------------------------------------------------------ the build command


def test_build_command_builds_and_prints_statistics(tmp_path):
    fake_ap10k.write_raw(tmp_path / "data" / "AP-10K-raw")
    result = CliRunner().invoke(build_ap10k_command, ["--data-root", str(tmp_path / "data"), "-q", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "5 species in 3 families" in result.output and "pair list sha256" in result.output
    assert "crowd images: published-list (1 ids, sha256" in result.output
    assert "intra-species" in result.output and "(seed 3)" in result.output
    manifest = json.loads((tmp_path / "data" / "AP-10K" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["rules"]["test_per_species"] == 30


def test_build_command_crowd_options(tmp_path):
    fake_ap10k.write_raw(tmp_path / "data" / "AP-10K-raw")
    base = ["--data-root", str(tmp_path / "data"), "-q"]
    missing = CliRunner().invoke(build_ap10k_command, [*base, "--crowd-list", str(tmp_path / "nothere.txt")])
    assert missing.exit_code != 0 and "cannot read the crowd list" in str(missing.exception)
    assert "check the --crowd-list path, or build without --crowd-list" in missing.exception.hint
    result = CliRunner().invoke(build_ap10k_command, [*base, "--crowd-rule", "derived"])
    assert result.exit_code == 0, result.output
    assert "crowd images: derived (1 ids)" in result.output
    assert json.loads((tmp_path / "data" / "AP-10K" / "manifest.json").read_text())["crowd"]["rule"] == "derived"
    result = CliRunner().invoke(build_ap10k_command, [*base, "--crowd-rule", "everything"])
    assert result.exit_code == 2 and "'everything' is not one of 'list', 'derived'" in result.output


def test_builder_modules_do_not_import_torch():
    script = (
        "import sys, importlib; sys.modules['torch'] = None;"
        "importlib.import_module('corrbench.datasets.ap10k.build');"  # and with it raw, pairs and layout
        "pairs = importlib.import_module('corrbench.datasets.ap10k.pairs');"
        "print(pairs.split_species(list(range(60)))[2][0])"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "30"


# ------------------------------------------------------------------------------------------- end to end





def _expected_points(built, folder: str) -> dict[str, int]:
    by_id = built[1].by_id()
    return {f"{s:012d}-{t:012d}:{c}": sum(a > 0 and b > 0 for a, b in zip(by_id[s].visibility, by_id[t].visibility))
            for s, t, c in _pairs_in(built[0] / "AP-10K" / "PairAnnotation" / folder)}


@pytest.mark.parametrize("name", list(SETTINGS))  # not "benchmark": pytest-benchmark owns that
def test_oracle_scores_100_with_every_pair_and_point(built, tmp_path, name):
    points = _expected_points(built, SETTINGS[name])
    result = run(RunOptions(method="oracle", benchmark=name, data_root=built[0], out=tmp_path / "r",
                            progress=False, download=False)).result
    assert result["counts"]["pairs"] == len(points) > 0
    assert result["counts"]["points"] == sum(points.values())
    for by in ("image", "point"):
        assert [result["metrics"]["pck"][by]["all"][a] for a in ALPHAS] == [100.0] * 5
    assert result["benchmark"]["adapter_options"]["visibility"] == "v>0"
    assert result["benchmark"]["data_dir"] == "AP-10K" and result["benchmark"]["split"] == "test"


@pytest.mark.parametrize("name", list(SETTINGS))  # not "benchmark": pytest-benchmark owns that
def test_shifted_truth_scores_what_the_box_sizes_say(built, tmp_path, name):
    """2.5 px off: within alpha * 40 for alpha >= 0.1 (even target ids), within alpha * 20 for alpha >= 0.15."""
    points = _expected_points(built, SETTINGS[name])
    big = {pair: int(pair.rpartition(":")[0].split("-")[1]) % 2 == 0 for pair in points}  # target box 40 x 30
    per_image = 100.0 * sum(big.values()) / len(big)
    per_point = 100.0 * sum(n for pair, n in points.items() if big[pair]) / sum(points.values())
    assert 0 < per_image < 100  # the fixture has both box sizes among targets
    # every point 2.5 px off: the ground truth moved by (1.5, 2.0)
    result = run(RunOptions(method=OFFSET_MATCHER, options={"dx": 1.5, "dy": 2.0}, benchmark=name,
                            data_root=built[0], out=tmp_path / "r", progress=False, download=False)).result
    pck = result["metrics"]["pck"]
    assert [pck["image"]["all"][a] for a in ALPHAS] == pytest.approx([0.0, 0.0, per_image, 100.0, 100.0], abs=1e-9)
    assert [pck["point"]["all"][a] for a in ALPHAS] == pytest.approx([0.0, 0.0, per_point, 100.0, 100.0], abs=1e-9)


def _tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and bytes, JPEGs left out (Pillow's encoder made the fixture's)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix != ".jpg":
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def test_the_build_is_byte_identical_to_the_builds_made_before(tmp_path, monkeypatch):
    # The digest of this build as the builder wrote it before issue 12 moved it into datasets/ap10k/ (measured on
    # that code): pair files, image annotations, split lists and manifest ("builder" included) must not change.
    # The manifest records the published list's sha256: the real one here, not the module fixture's stand-in.
    monkeypatch.setattr(ap10k_layout, "CROWD_LIST_SOURCE", PUBLISHED_CROWD_LIST)
    fake_ap10k.write_raw(tmp_path / "raw")
    build_ap10k(tmp_path / "raw", tmp_path / "AP-10K", progress=False, crowd_rule="derived",
                rules=fake_ap10k.SMALL_RULES)
    assert _tree_digest(tmp_path / "AP-10K") == "cccce68c8c7c8917e81c019dc48aa151ffdb4f0d9be3d292b60d27aad93a035d"
