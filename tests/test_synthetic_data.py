"""The procedural ``synthetic`` benchmark: SPair-71k layout, determinism, annotation consistency, atomicity.

Every check reads the files back the way a SPair-71k / SPair-U loader would, so the tests fail if the
generator writes something a real-format adapter would misread.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from corrbench.datasets.synthetic import generate as synthetic_generate
from corrbench.datasets.synthetic.generate import generate_synthetic
from corrbench.datasets.synthetic.layout import CATEGORIES, GENERATOR_VERSION, category_keypoints
from corrbench.datasets.synthetic.render import to_canvas
from corrbench.datasets.synthetic.sketches import ellipse
from corrbench.errors import ConfigError, DataError

SPLITS = ("trn", "val", "test")
SMALL = dict(images_per_category=8, pairs_per_category={"trn": 10, "val": 2, "test": 8})

IMAGE_KEYS = [
    "filename", "src_database", "src_annotation", "src_image", "image_width", "image_height", "image_depth",
    "category", "pose", "truncated", "occluded", "difficult", "bndbox", "kps", "azimuth_id",
]
PAIR_KEYS = [
    "pair_id", "src_imname", "trg_imname", "src_imsize", "trg_imsize", "src_bndbox", "trg_bndbox", "src_pose",
    "trg_pose", "src_kps", "trg_kps", "kps_ids", "category", "mirror", "viewpoint_variation", "scale_variation",
    "truncation", "occlusion",
]
STEM = re.compile(r"^(\d{6})-([a-z]+_\d{4})-([a-z]+_\d{4}):([a-z]+)$")

# (a, b): along the direction the object faces, keypoint a lies ahead of keypoint b. For the front-facing
# biped the figure's left is "ahead" (it is on the viewer's right when the instance is not mirrored).
ORDERED = {
    "quadruped": [("nose", "tail_tip"), ("withers", "tail_base")],
    "bird": [("beak_tip", "tail_tip")],
    "biped": [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")],
    "lamp": [("base_front", "base_back")],
    "vehicle": [("headlight", "taillight"), ("front_left_wheel", "rear_left_wheel"),
                ("front_bumper", "rear_bumper")],
}


def load(path: Path):
    return json.loads(path.read_text())


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic") / "ds"
    manifest = generate_synthetic(root, seed=3, **SMALL)
    return root, manifest


def layout_stems(root: Path, split: str, size: str = "large") -> list[str]:
    text = (root / "Layout" / size / f"{split}.txt").read_text()
    assert text == "" or text.endswith("\n")
    return text.splitlines()


def pairs(root: Path, split: str):
    for stem in layout_stems(root, split):
        yield stem, load(root / "PairAnnotation" / split / f"{stem}.json")


# ------------------------------------------------------------------------------------------------ API


def test_categories_and_keypoint_names():
    assert len(CATEGORIES) == 5 and len(set(CATEGORIES)) == 5
    for cat in CATEGORIES:
        seen, unseen = category_keypoints(cat)
        assert 8 <= len(seen) <= 14, cat
        assert 3 <= len(unseen) <= 5, cat
        assert len(set(seen)) == len(seen) and len(set(unseen)) == len(unseen)
        assert not set(seen) & set(unseen), f"{cat}: unseen keypoints must not be seen ones"
        assert "-" not in cat and ":" not in cat and "_" not in cat  # stems split on these
    assert any("left" in n for n in category_keypoints("quadruped")[0])
    with pytest.raises(ConfigError):
        category_keypoints("aeroplane")


@pytest.mark.parametrize(
    "kwargs",
    [dict(seed=-1), dict(images_per_category=5), dict(pairs_per_category={"train": 3}),
     dict(pairs_per_category={"trn": -1})],
)
def test_bad_arguments_are_config_errors(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_documented_hash(dataset, tmp_path):
    root, manifest = dataset
    again = generate_synthetic(tmp_path / "again", seed=3, **SMALL)
    assert again == manifest
    first, second = all_files(root), all_files(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    # the manifest's sha256 is over every other file: path NUL size NUL bytes, sorted by path
    digest = hashlib.sha256()
    for rel in sorted(first):
        if rel == "synthetic_manifest.json":
            continue
        digest.update(rel.encode() + b"\0" + str(len(first[rel])).encode() + b"\0" + first[rel])
    assert digest.hexdigest() == manifest["sha256"]
    assert manifest["counts"]["files"] == len(first) - 1
    assert load(root / "synthetic_manifest.json") == manifest
    assert manifest["generator_version"] == GENERATOR_VERSION and manifest["seed"] == 3


def test_different_seed_different_data(dataset, tmp_path):
    root, manifest = dataset
    other = generate_synthetic(tmp_path / "other", seed=4, **SMALL)
    assert other["sha256"] != manifest["sha256"]
    a = (root / "JPEGImages/quadruped/quadruped_0001.jpg").read_bytes()
    b = (tmp_path / "other/JPEGImages/quadruped/quadruped_0001.jpg").read_bytes()
    assert a != b


# ------------------------------------------------------------------------------------------------ layout


def test_layout_is_complete_and_in_spair_format(dataset):
    root, manifest = dataset
    for split in SPLITS:
        stems = layout_stems(root, split)
        assert stems == layout_stems(root, split, "small")
        assert len(stems) == manifest["counts"]["pairs"][split] > 0
        assert len(stems) <= manifest["arguments"]["pairs_per_category"][split] * len(CATEGORIES)
        files = sorted(p.name[:-5] for p in (root / "PairAnnotation" / split).glob("*.json"))
        assert files == sorted(stems), f"{split}: pair files and Layout disagree"
        for number, stem in enumerate(stems, start=1):
            match = STEM.match(stem)
            assert match, stem
            pid, src, trg, cat = match.groups()
            assert int(pid) == number
            pair = load(root / "PairAnnotation" / split / f"{stem}.json")
            assert list(pair) == PAIR_KEYS
            assert pair["pair_id"] == number and pair["category"] == cat
            assert (pair["src_imname"], pair["trg_imname"]) == (f"{src}.jpg", f"{trg}.jpg")
            assert src != trg and src.startswith(cat + "_") and trg.startswith(cat + "_")
            for side, name in (("src", src), ("trg", trg)):
                image = Image.open(root / "JPEGImages" / cat / f"{name}.jpg")
                ann = load(root / "ImageAnnotation" / cat / f"{name}.json")
                seg = Image.open(root / "Segmentation" / cat / f"{name}.png")
                assert image.mode == "RGB" and seg.mode == "L"
                assert image.size == seg.size == (ann["image_width"], ann["image_height"])
                assert pair[f"{side}_imsize"] == [*image.size, 3]
                assert pair[f"{side}_bndbox"] == ann["bndbox"]
    images = sorted(p.stem for p in (root / "JPEGImages").rglob("*.jpg"))
    assert images == sorted(manifest["images"]) and len(images) == manifest["counts"]["images"] == 5 * 8


def test_image_annotations_masks_and_boxes(dataset):
    root, manifest = dataset
    for name, info in manifest["images"].items():
        cat = info["category"]
        ann = load(root / "ImageAnnotation" / cat / f"{name}.json")
        assert list(ann) == IMAGE_KEYS
        assert ann["filename"] == f"{name}.jpg" and ann["category"] == cat and ann["image_depth"] == 3
        assert ann["src_database"] == "corrbench-synthetic" and ann["pose"] == "Unspecified"
        assert ann["truncated"] == info["truncated"] and ann["occluded"] == info["occluded"]
        assert 0 <= ann["azimuth_id"] <= 7
        W, H = ann["image_width"], ann["image_height"]
        assert 160 <= W <= 256 and 160 <= H <= 256
        seg = np.asarray(Image.open(root / "Segmentation" / cat / f"{name}.png"))
        assert set(np.unique(seg).tolist()) == {0, CATEGORIES.index(cat) + 1}
        ys, xs = np.nonzero(seg)
        assert ann["bndbox"] == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        seen = category_keypoints(cat)[0]
        assert list(ann["kps"]) == [str(i) for i in range(len(seen))]
        x1, y1, x2, y2 = ann["bndbox"]
        visible = 0
        for point in ann["kps"].values():
            if point is None:
                continue
            visible += 1
            x, y = point
            assert isinstance(x, int) and isinstance(y, int)
            assert 0 <= x < W and 0 <= y < H, (name, point)
            assert x1 - 2 <= x <= x2 + 2 and y1 - 2 <= y <= y2 + 2, (name, point, ann["bndbox"])
            assert seg[y, x] != 0, f"{name}: visible keypoint {point} is off the object mask"
        assert visible >= 4


def test_pair_keypoints_are_the_image_keypoints(dataset):
    root, manifest = dataset
    for split in SPLITS:
        for stem, pair in pairs(root, split):
            cat = pair["category"]
            src = load(root / "ImageAnnotation" / cat / pair["src_imname"].replace(".jpg", ".json"))
            trg = load(root / "ImageAnnotation" / cat / pair["trg_imname"].replace(".jpg", ".json"))
            ids = pair["kps_ids"]
            assert all(isinstance(i, str) for i in ids)
            assert len(ids) >= 3 and len(ids) == len(pair["src_kps"]) == len(pair["trg_kps"])
            assert ids == sorted(set(ids), key=int)
            both = [k for k in src["kps"] if src["kps"][k] is not None and trg["kps"][k] is not None]
            assert ids == both, f"{stem}: kps_ids must be exactly the keypoints visible in both images"
            assert pair["src_kps"] == [src["kps"][i] for i in ids]
            assert pair["trg_kps"] == [trg["kps"][i] for i in ids]
            a = manifest["images"][pair["src_imname"][:-4]]
            b = manifest["images"][pair["trg_imname"][:-4]]
            assert pair["mirror"] == int(a["mirrored"] != b["mirrored"])
            assert pair["truncation"] == a["truncated"] + 2 * b["truncated"]
            assert pair["occlusion"] == a["occluded"] + 2 * b["occluded"]
            assert pair["viewpoint_variation"] in (0, 1, 2) and pair["scale_variation"] in (0, 1, 2)
            if pair["mirror"]:
                assert pair["viewpoint_variation"] == 2


def test_splits_are_disjoint_and_pairs_distinct(dataset):
    root, manifest = dataset
    by_split = {sp: {n for names in manifest["splits"][sp].values() for n in names} for sp in SPLITS}
    assert not by_split["trn"] & by_split["val"] and not by_split["trn"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert set().union(*by_split.values()) == set(manifest["images"])
    for sp in SPLITS:
        seen_pairs = set()
        for _, pair in pairs(root, sp):
            names = (pair["src_imname"][:-4], pair["trg_imname"][:-4])
            assert set(names) <= by_split[sp], f"{sp} pair uses an image of another split"
            assert names not in seen_pairs
            seen_pairs.add(names)
            assert all(manifest["images"][n]["split"] == sp for n in names)


# ------------------------------------------------------------------------------- unseen keypoints (SPair-U)


def test_unseen_keypoints_in_jamais_vu_layout(dataset):
    root, manifest = dataset
    test_images = {n for names in manifest["splits"]["test"].values() for n in names}
    extra_images = {p.stem for p in (root / "ExtraImageAnnotation").rglob("*.json")}
    assert extra_images == test_images
    extra_stems = {p.name[:-5] for p in (root / "ExtraPairAnnotation" / "test").glob("*.json")}
    stems = layout_stems(root, "test")
    assert extra_stems <= set(stems) and len(extra_stems) == manifest["counts"]["extra_pairs"] > 0
    assert not (root / "ExtraPairAnnotation" / "trn").exists()
    for stem in stems:
        cat = stem.rsplit(":", 1)[1]
        unseen = category_keypoints(cat)[1]
        assert manifest["categories"][cat]["unseen"] == list(unseen)
        _, src, trg, _ = STEM.match(stem).groups()
        a = load(root / "ExtraImageAnnotation" / cat / f"{src}.json")
        b = load(root / "ExtraImageAnnotation" / cat / f"{trg}.json")
        assert list(a) == IMAGE_KEYS and list(a["kps"]) == [str(i) for i in range(len(unseen))]
        assert a["bndbox"] == load(root / "ImageAnnotation" / cat / f"{src}.json")["bndbox"]
        both = [k for k in a["kps"] if a["kps"][k] is not None and b["kps"][k] is not None]
        path = root / "ExtraPairAnnotation" / "test" / f"{stem}.json"
        if not both:
            assert not path.exists(), f"{stem}: no unseen keypoint in common, so no extra pair file"
            continue
        extra = load(path)
        assert list(extra) == PAIR_KEYS
        assert extra["kps_ids"] == both
        assert extra["src_kps"] == [a["kps"][i] for i in both]
        assert extra["trg_kps"] == [b["kps"][i] for i in both]
        seen_pair = load(root / "PairAnnotation" / "test" / f"{stem}.json")
        assert extra["pair_id"] == seen_pair["pair_id"] and extra["mirror"] == seen_pair["mirror"]


# ----------------------------------------------------------------------------------- semantic consistency


def test_left_right_and_front_back_are_semantic(dataset):
    root, manifest = dataset
    checked = {(cat, a, b): 0 for cat, rules in ORDERED.items() for a, b in rules}
    upright = 0
    for name, info in manifest["images"].items():
        cat = info["category"]
        seen = category_keypoints(cat)[0]
        kps = load(root / "ImageAnnotation" / cat / f"{name}.json")["kps"]
        theta = math.radians(info["rotation_deg"])
        sign = -1.0 if info["mirrored"] else 1.0
        facing = np.array([math.cos(theta), math.sin(theta)]) * sign  # image x right, y down
        for a, b in ORDERED[cat]:
            pa, pb = kps[str(seen.index(a))], kps[str(seen.index(b))]
            if pa is None or pb is None:
                continue
            checked[cat, a, b] += 1
            ahead = float(np.dot(np.subtract(pa, pb), facing))
            assert ahead > 0, f"{name}: {a} should lie ahead of {b} (mirrored={info['mirrored']})"
            if abs(info["rotation_deg"]) < 15:  # near-upright: the plain x order shows it
                upright += 1
                if info["mirrored"]:
                    assert pa[0] < pb[0], f"{name}: mirrored, {a} should be left of {b} in the image"
                else:
                    assert pa[0] > pb[0], f"{name}: {a} should be right of {b} in the image"
    assert min(checked.values()) >= 3, checked
    assert upright >= 5


@pytest.mark.parametrize("centre", [(20.0, 15.0), (20.3, 15.7), (7.5, 30.25)])
def test_drawing_follows_the_pixel_centre_convention(centre):
    """A shape drawn around point p on the 2x canvas has its centroid at p in final-image pixels."""
    from PIL import ImageDraw

    W = H = 48
    canvas = Image.new("L", (2 * W, 2 * H), 0)
    poly = to_canvas(ellipse(centre, 6.3, 3.1, 20, 64))
    ImageDraw.Draw(canvas).polygon(poly.ravel().tolist(), fill=1)
    cover = np.asarray(canvas, np.float64).reshape(H, 2, W, 2).mean(axis=(1, 3))
    ys, xs = np.mgrid[:H, :W]
    centroid = ((cover * xs).sum() / cover.sum(), (cover * ys).sum() / cover.sum())
    assert centroid == pytest.approx(centre, abs=0.05)


def test_visibility_means_unoccluded_and_on_the_object(dataset):
    """Some keypoints are hidden (occluders, self-occlusion, the border) and none hidden is on the list."""
    root, manifest = dataset
    hidden = total = 0
    for name, info in manifest["images"].items():
        kps = load(root / "ImageAnnotation" / info["category"] / f"{name}.json")["kps"]
        hidden += sum(v is None for v in kps.values())
        total += len(kps)
    assert 0.02 < hidden / total < 0.4
    images = manifest["images"].values()
    assert any(i["mirrored"] for i in images) and not all(i["mirrored"] for i in images)
    assert any(i["occluded"] for i in images)


def test_colour_matching_does_not_solve_it(dataset):
    """Nearest-colour matching scores far below a perfect matcher (which scores 100 by construction)."""
    from scipy.ndimage import uniform_filter

    root, _ = dataset
    hits = []
    for stem, pair in pairs(root, "test"):
        cat = pair["category"]
        src = np.asarray(Image.open(root / "JPEGImages" / cat / pair["src_imname"]), np.float32)
        trg = np.asarray(Image.open(root / "JPEGImages" / cat / pair["trg_imname"]), np.float32)
        src, trg = uniform_filter(src, (5, 5, 1)), uniform_filter(trg, (5, 5, 1))
        x1, y1, x2, y2 = pair["trg_bndbox"]
        threshold = 0.1 * max(x2 - x1, y2 - y1)
        for (sx, sy), (tx, ty) in zip(pair["src_kps"], pair["trg_kps"]):
            dist = ((trg - src[sy, sx]) ** 2).sum(-1)
            py, px = np.unravel_index(int(dist.argmin()), dist.shape)
            hits.append(math.hypot(px - tx, py - ty) <= threshold)
    assert len(hits) >= 30
    assert np.mean(hits) < 0.4


def test_pair_selection_and_extra_skip_rules(tmp_path, monkeypatch):
    """With visibility thinned out, exactly the candidate pairs with >= 3 shared seen keypoints are written,
    and an extra (unseen) pair file exists exactly when >= 1 unseen keypoint is shared."""
    real = synthetic_generate.render_instance
    calls = {"n": 0}

    def thinned(*args, **kwargs):
        inst = real(*args, **kwargs)
        calls["n"] += 1
        visible = [i for i, p in enumerate(inst.kps) if p is not None]
        keep = set(visible[:4]) if calls["n"] % 2 else set(visible[-4:])
        inst.kps = [p if i in keep else None for i, p in enumerate(inst.kps)]
        if calls["n"] % 3 == 0:
            inst.unseen = [None] * len(inst.unseen)
        return inst

    monkeypatch.setattr(synthetic_generate, "render_instance", thinned)
    root = tmp_path / "ds"
    manifest = generate_synthetic(root, seed=5, images_per_category=9,
                                  pairs_per_category={"trn": 100, "val": 100, "test": 100})
    rejected = without_extra = 0
    for split in SPLITS:
        written = set(layout_stems(root, split))
        written_pairs = {STEM.match(s).group(2, 3) for s in written}
        for cat in CATEGORIES:
            names = manifest["splits"][split][cat]
            kps = {n: load(root / "ImageAnnotation" / cat / f"{n}.json")["kps"] for n in names}
            for a in names:
                for b in names:
                    if a == b:
                        continue
                    shared = sum(kps[a][k] is not None and kps[b][k] is not None for k in kps[a])
                    assert ((a, b) in written_pairs) == (shared >= 3), (split, a, b, shared)
                    rejected += shared < 3
        assert manifest["counts"]["pairs"][split] == len(written) < manifest["counts"]["pairs_requested"][split]
    for stem in layout_stems(root, "test"):
        _, src, trg, cat = STEM.match(stem).groups()
        a = load(root / "ExtraImageAnnotation" / cat / f"{src}.json")["kps"]
        b = load(root / "ExtraImageAnnotation" / cat / f"{trg}.json")["kps"]
        shared = sum(a[k] is not None and b[k] is not None for k in a)
        exists = (root / "ExtraPairAnnotation" / "test" / f"{stem}.json").exists()
        assert exists == (shared >= 1), stem
        without_extra += not exists
    assert rejected > 0 and without_extra > 0


# ------------------------------------------------------------------------------------------------ atomic


def test_refuses_a_non_empty_root(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(DataError) as info:
        generate_synthetic(root, seed=0, **SMALL)
    assert str(root) in str(info.value)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError):
        generate_synthetic(tmp_path / "file", seed=0, **SMALL)


def test_empty_root_is_filled_and_no_temp_dir_is_left(tmp_path, capsys):
    root = tmp_path / "ds"
    root.mkdir()
    manifest = generate_synthetic(root, seed=1, images_per_category=6,
                                  pairs_per_category={"trn": 2, "val": 1, "test": 2}, progress=True)
    assert (root / "synthetic_manifest.json").is_file() and manifest["counts"]["images"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert "synthetic" in capsys.readouterr().err  # the tqdm bar


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic_generate.render_instance

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_generate, "render_instance", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "ds", seed=0, **SMALL)
    assert calls["n"] == 7
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ default


def test_default_dataset(tmp_path):
    manifest = generate_synthetic(tmp_path / "ds")
    counts = manifest["counts"]
    assert manifest["arguments"] == {"images_per_category": 12,
                                     "pairs_per_category": {"trn": 24, "val": 6, "test": 12}}
    assert counts["images"] == 60
    assert counts["pairs"]["trn"] == 5 * 24 and counts["pairs"]["test"] == 5 * 12
    assert 0 < counts["pairs"]["val"] <= 5 * 6 and counts["extra_pairs"] > 0
    sizes = {sp: len(manifest["splits"][sp]["bird"]) for sp in SPLITS}
    assert sizes == {"trn": 6, "val": 2, "test": 4}


def test_the_adapter_generates_with_its_options_and_refuses_a_dataset_made_with_others(tmp_path):
    from corrbench.datasets.synthetic.adapter import SyntheticDataset

    root = tmp_path / "corrbench-synthetic"
    SyntheticDataset(root, seed=3, **SMALL).prepare(progress=False)
    recorded = load(root / "synthetic_manifest.json")["arguments"]
    assert recorded == {"images_per_category": 8, "pairs_per_category": {"trn": 10, "val": 2, "test": 8}}
    SyntheticDataset(root, seed=3, **SMALL).prepare(progress=False)  # the same arguments: accepted as is

    # Same seed and version but another size: a different benchmark, which must not pass for this one.
    with pytest.raises(DataError) as caught:
        SyntheticDataset(root, seed=3).prepare(progress=False)
    message = str(caught.value)
    assert "synthetic_manifest.json" in message and "images_per_category 8 (needs 12)" in message
    assert "pairs_per_category" in message and "delete" in caught.value.hint
    with pytest.raises(DataError, match=r"seed 3 \(needs 4\)"):
        SyntheticDataset(root, seed=4, **SMALL).prepare(progress=False)
    # a split left out keeps the generator's default, so the request is compared in full
    with pytest.raises(DataError, match="pairs_per_category"):
        SyntheticDataset(root, seed=3, images_per_category=8, pairs_per_category={"trn": 10}).prepare(progress=False)
    with pytest.raises(ConfigError, match="images_per_category must be an integer >= 6"):
        SyntheticDataset(root, seed=3, images_per_category=2)


def test_an_unreadable_manifest_is_a_data_error_naming_the_file(tmp_path):
    from corrbench.datasets.synthetic.adapter import SyntheticDataset

    root = tmp_path / "corrbench-synthetic"
    SyntheticDataset(root, seed=3, **SMALL).prepare(progress=False)
    (root / "synthetic_manifest.json").write_bytes(b'{"seed": 3,')  # cut short, as by a full disk
    with pytest.raises(DataError, match=r"synthetic_manifest\.json: not valid JSON \(") as caught:
        SyntheticDataset(root, seed=3, **SMALL).prepare(progress=False)
    assert "delete" in caught.value.hint
    (root / "synthetic_manifest.json").write_text("[3]")
    with pytest.raises(DataError, match="expected a JSON object, found list"):
        SyntheticDataset(root, seed=3, **SMALL).prepare(progress=False)
