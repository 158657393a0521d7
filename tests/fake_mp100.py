"""Tiny MP-100 fixtures in the official formats, generated: COCO annotation files (``mp100_split<k>_test.json``),
small JPEG images, MARCO-format pair lists and a zip laid out like MARCO's release (``mp100_pairs/*.json``).

Every fixture category has images ``j = 0 .. n-1`` of size ``(96 + 8 j) x 80`` with these visibility patterns
(the same for every category):

    j = 0  every keypoint visible
    j = 1  all but keypoint 1            (K = 4: 1 0 1 1)
    j = 2  all but keypoint 2            (K = 4: 1 1 0 1)
    j = 3  only keypoints 0 and 1        (fewer than 3: dropped by the curation)

so pair (2 -> 1) is the example where matching by index and MARCO's truncation disagree. Keypoint k of image
j sits at ``(8 + 8 (k % 10) + j, 8 + 9 (k // 10) + j)``; the object box is ``[5, 5, T, 0.75 T]`` with
``T = 40`` for even j and ``60`` for odd j, so the PCK threshold of a target is ``T``.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


# (category id, MP-100 name, image folder, keypoints, images, annotation file)
FIXTURE_CATEGORIES = (
    (40, "face", "human_face", 68, 4, "mp100_split1_test.json"),
    (1, "skirt", "skirt", 4, 4, "mp100_split1_test.json"),
    (67, "trousers", "trousers", 5, 4, "mp100_split1_test.json"),
    (66, "fly", "fly_body", 6, 4, "mp100_split1_test.json"),
    (90, "raccoon_body", "raccoon_body", 4, 4, "mp100_split1_test.json"),
    (20, "cat_body", "cat_body", 4, 4, "mp100_split1_test.json"),  # overlaps SPair-71k: removed
    (4, "fennecfox_face", "fennecfox_face", 4, 4, "mp100_split2_test.json"),
    (49, "sofa", "sofa", 4, 4, "mp100_split2_test.json"),
    (98, "table", "table", 4, 2, "mp100_split2_test.json"),  # only 2 images: 2 eligible pairs
    (45, "chair", "chair", 4, 4, "mp100_split2_test.json"),  # in no domain: unused
    (18, "face", "amur_tiger_body", 19, 2, "mp100_split2_test.json"),  # the release's id-18 "face": unused
)
# How the release writes category records: "supercategory", "keypoints" (names), "skeleton". Both categories
# named "face" carry an EMPTY name list ("keypoints": []) although their annotations hold 68 and 19 keypoints;
# the animal faces are named "0", "1", ...; the rest by part.
UNNAMED_KEYPOINTS = {40, 18}
DIGIT_NAMED_KEYPOINTS = {4}
SUPERCATEGORY = {40: "person", 18: "person", 4: "animal_face"}
DOMAIN_OF = {40: "human_face", 1: "clothing", 67: "clothing", 66: "animal_body_unseen", 90: "animal_body_unseen",
             4: "animal_face", 49: "furniture", 98: "furniture"}  # fmt: skip
OFFSET = (3.0, 4.0)  # what OffsetMatcher adds: 5 pixels away
LIST_PAIRS = ((0, 1), (2, 1), (2, 0))  # (source j, target j) of the generated "official" lists


@dataclass(frozen=True)
class FakeImage:
    category_id: int
    j: int
    file_name: str
    size: tuple[int, int]
    xy: tuple[tuple[float, float], ...]
    visible: tuple[bool, ...]
    bbox: tuple[float, float, float, float]

    @property
    def threshold(self) -> float:
        return max(self.bbox[2], self.bbox[3])


def visibility(j: int, k: int) -> tuple[bool, ...]:
    if j == 3:
        return tuple(i < 2 for i in range(k))
    return tuple(not (j in (1, 2) and i == j) for i in range(k))


def file_name(folder: str, j: int) -> str:
    return f"human_face/helen/trainset/{1000 + j}_1.jpg" if folder == "human_face" else f"{folder}/{j:04d}.jpg"


def fake_images(categories=FIXTURE_CATEGORIES) -> dict[int, list[FakeImage]]:
    out: dict[int, list[FakeImage]] = {}
    for cid, _, folder, k, n, _ in categories:
        side = lambda j: 40.0 if j % 2 == 0 else 60.0  # noqa: E731
        out[cid] = [
            FakeImage(
                cid, j, file_name(folder, j), (96 + 8 * j, 80),
                tuple((8.0 + 8 * (i % 10) + j, 8.0 + 9 * (i // 10) + j) for i in range(k)),
                visibility(j, k), (5.0, 5.0, side(j), 0.75 * side(j)),
            )  # fmt: skip
            for j in range(n)
        ]
    return out


def coco_annotation(ann_id: int, image_id: int, image: FakeImage, visible=None) -> dict:
    visible = image.visible if visible is None else visible
    flat = []
    for i, ((x, y), v) in enumerate(zip(image.xy, visible)):
        flat += [x, y, 2 if i % 2 else 2.0] if v else [0, 0, 0]  # the release mixes 2 and 2.0
    return {"id": ann_id, "image_id": image_id, "category_id": image.category_id, "keypoints": flat,
            "num_keypoints": sum(visible), "bbox": list(image.bbox), "area": image.bbox[2] * image.bbox[3],
            "iscrowd": 0}  # fmt: skip


def keypoint_names(category_id: int, name: str, k: int) -> list[str]:
    if category_id in UNNAMED_KEYPOINTS:
        return []
    return [str(i) if category_id in DIGIT_NAMED_KEYPOINTS else f"{name}_kp{i}" for i in range(k)]


def coco_files(images: dict[int, list[FakeImage]], categories=FIXTURE_CATEGORIES) -> dict[str, dict]:
    """MP-100-style COCO dicts by annotation file name."""
    files: dict[str, dict] = {}
    for cid, name, _, k, _, ann_file in categories:
        coco = files.setdefault(ann_file, {"info": {}, "images": [], "annotations": [], "categories": []})
        coco["categories"].append({"supercategory": SUPERCATEGORY.get(cid, name), "id": cid, "name": name,
                                   "keypoints": keypoint_names(cid, name, k), "skeleton": []})  # fmt: skip
        for image in images[cid]:
            image_id = cid * 1000 + image.j
            coco["images"].append({"id": image_id, "file_name": image.file_name,
                                   "width": image.size[0], "height": image.size[1]})  # fmt: skip
            coco["annotations"].append(coco_annotation(image_id, image_id, image))
    return files


def write_image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 90, 60)).save(path, quality=90)


# where each arrangement keeps MP-100: (folder under the data root, image folder in it)
LAYOUTS = {"corrbench": ("MP-100", "images"), "marco": ("mp100_all", "mp100")}  # MARCO's docs/data.md


@dataclass
class FakeMP100:
    data_root: Path
    images: dict[int, list[FakeImage]]
    layout: str = "corrbench"

    @property
    def root(self) -> Path:
        return self.data_root / LAYOUTS[self.layout][0]

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    @property
    def image_dir(self) -> Path:
        return self.root / LAYOUTS[self.layout][1]

    def image(self, file: str) -> FakeImage:
        return next(i for imgs in self.images.values() for i in imgs if i.file_name == file)


def make_mp100(data_root: Path, *, with_images: bool = True, extras: bool = True,
               layout: str = "corrbench") -> FakeMP100:
    """A data root with MP-100's annotations (and images) for the fixture categories, in corrbench's
    arrangement (``MP-100/{annotations,images}``) or MARCO's (``mp100_all/{annotations,mp100}``).

    ``extras`` adds what the curation must ignore or resolve: a train file with an image that must never
    be listed, an image repeated by a later test file, and a second, less visible raccoon instance with a
    LOWER annotation id on raccoon image 0 (the more visible one must win).
    """
    images = fake_images()
    fake = FakeMP100(Path(data_root), images, layout)
    fake.annotations.mkdir(parents=True, exist_ok=True)
    files = coco_files(images)
    if extras:
        raccoon0 = images[90][0]
        files["mp100_split1_test.json"]["annotations"].append(
            coco_annotation(1, 90 * 1000, raccoon0, visible=(True, True, True, False)))
        skirt0 = images[1][0]
        files["mp100_split2_test.json"]["images"].append({"id": 777777, "file_name": skirt0.file_name,
                                                         "width": 1, "height": 1})  # fmt: skip
        files["mp100_split2_test.json"]["annotations"].append(coco_annotation(777777, 777777, skirt0))
        files["mp100_split2_test.json"]["categories"].append(
            files["mp100_split1_test.json"]["categories"][1])  # skirt, for the repeated image
        train_face = FakeImage(40, 9, "human_face/helen/trainset/train_only.jpg", (96, 80), images[40][0].xy,
                               images[40][0].visible, images[40][0].bbox)  # fmt: skip
        files["mp100_split1_train.json"] = {
            "images": [{"id": 5, "file_name": train_face.file_name, "width": 96, "height": 80}],
            "annotations": [coco_annotation(5, 5, train_face)],
            "categories": [files["mp100_split1_test.json"]["categories"][0]],
        }
    for name, coco in files.items():
        (fake.annotations / name).write_text(json.dumps(coco))
    if with_images:
        for imgs in images.values():
            for image in imgs:
                write_image(fake.image_dir / image.file_name, image.size)
    return fake


# -- MARCO-format pair lists and release zip ----------------------------------------------------------------


def pair_entries(fake: FakeMP100, domain: str, pairs=LIST_PAIRS) -> list[dict]:
    """Pairs of the domain's fixture categories in MARCO's entry format (episodes numbered in order)."""
    entries = []
    for cid in sorted(c for c, d in DOMAIN_OF.items() if d == domain):
        imgs = fake.images[cid]
        for s, t in pairs if len(imgs) > 2 else ((0, 1), (1, 0)):
            entries.append({"episode_idx": len(entries), "category_id": cid,
                            "src_file": imgs[s].file_name, "trg_file": imgs[t].file_name})  # fmt: skip
    return entries


def encode_list(entries: list[dict]) -> bytes:
    return json.dumps(entries, indent=2).encode()


def official_lists(fake: FakeMP100) -> dict[str, list[dict]]:
    return {domain: pair_entries(fake, domain) for domain in sorted(set(DOMAIN_OF.values()))}


def write_release_zip(path: Path, lists: dict[str, list[dict] | bytes], *, folder: str = "mp100_pairs") -> Path:
    """A zip laid out like MARCO's mp100_pairs.zip: ``mp100_pairs/pairs_<domain>.json`` (plus macOS litter)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{folder}/", b"")
        for domain, entries in lists.items():
            raw = entries if isinstance(entries, bytes) else encode_list(entries)
            archive.writestr(f"{folder}/pairs_{domain}.json", raw)
        archive.writestr(f"__MACOSX/{folder}/._pairs_furniture.json", b"\x00junk")
    Path(path).write_bytes(buffer.getvalue())
    return Path(path)
