"""A tiny raw AP-10K download, generated: COCO keypoint files in the release's exact format and small JPEGs.

Five species in three families (names with spaces, as AP-10K's), image ids interleaved across species, and the
cases the protocol must handle: a crowd image (on the fixture's crowd list, and with two annotations, the second
without keypoints and in a split file merged later, so the first annotation is the one kept), an image
with fewer than 3 visible keypoints, a sparse image (only 3 keypoints visible), an image whose keypoints are all
v = 1 (visible under ``v>0`` but not under ``v==2``), and a faint one with 5 keypoints at v = 1 (kept, but the
reference's pair score counts a v = 1 keypoint half, so it pairs with nothing).

Every box is ``[x, y, 40, 30]`` (threshold 40) for even image ids and ``[x, y, 16, 20]`` (threshold 20) for
odd ones, so tests can work PCK out by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from corrbench.datasets.ap10k.layout import KEYPOINT_NAMES
from corrbench.datasets.ap10k.pairs import BuildRules

FAMILIES = {"Canidae": ("arctic fox", "dog"), "Felidae": ("cat", "lion"), "Ursidae": ("black bear",)}
CATEGORY_IDS = {species: i + 1 for i, species in enumerate(s for f in FAMILIES.values() for s in f)}
SPLIT_FILES = ("ap10k-train-split1.json", "ap10k-test-split1.json", "ap10k-val-split1.json")

#: The protocol's numbers, shrunk so that every rule shows on a few images (see the default fixture below).
SMALL_RULES = BuildRules(
    test_per_species=3, val_per_species=2, train_pairs_per_image=1,
    cross_species_pairs=(("val", 2), ("test", 5)), cross_family_pairs=(("test", 4), ("val", 1)),
)


@dataclass
class FakeImage:
    image_id: int
    species: str
    visibility: list[int]  # 17 values in {0, 1, 2}
    extra_annotations: int = 0  # more animals in the image (what the derived crowd rule counts)
    listed_crowd: bool = False  # on the crowd list (what the default rule, GeoAware-SC's list, drops)
    extra_keypoints: bool = False  # the other animals are annotated too (separate animals, not a blob)

    @property
    def size(self) -> tuple[int, int]:
        return (64, 48) if self.image_id % 2 == 0 else (50, 40)

    @property
    def bbox(self) -> list[int]:
        return [4, 4, 40, 30] if self.image_id % 2 == 0 else [6, 5, 16, 20]

    @property
    def threshold(self) -> int:
        return max(self.bbox[2:])

    @property
    def keypoints(self) -> list[int]:
        x, y, w, h = self.bbox
        values = []
        for k, v in enumerate(self.visibility):
            if v == 0:
                values += [0, 0, 0]
            else:
                values += [x + (k % 5) * w // 5 + 1, y + (k // 5) * h // 4 + 1, v]
        return values

    def annotation(self, annotation_id: int) -> dict:
        return {
            "id": annotation_id, "image_id": self.image_id, "category_id": CATEGORY_IDS[self.species],
            "bbox": self.bbox, "area": self.bbox[2] * self.bbox[3], "iscrowd": 0,
            "num_keypoints": sum(v > 0 for v in self.visibility),  # COCO: the number of labelled keypoints
            "keypoints": self.keypoints,
        }


def regular_visibility(image_id: int) -> list[int]:
    """Most keypoints visible: three hidden (k + id divisible by 6), keypoint 16 half-visible on every 4th id."""
    return [0 if (k + image_id) % 6 == 0 else (1 if k == 16 and image_id % 4 == 0 else 2) for k in range(17)]


@dataclass
class FakeAP10K:
    images: list[FakeImage] = field(default_factory=list)

    def by_id(self) -> dict[int, FakeImage]:
        return {image.image_id: image for image in self.images}

    def kept(self, species: str, rules: BuildRules = SMALL_RULES, crowd: str = "list") -> list[FakeImage]:
        """The species' images that survive the crowd and keypoint filters, by id (independent of the builder).

        ``crowd``: "list" drops the images on the crowd list (the default build), "derived" those with more
        than one annotation."""
        def is_crowd(image: FakeImage) -> bool:
            return image.listed_crowd if crowd == "list" else image.extra_annotations > 0

        return sorted((i for i in self.images if i.species == species and not is_crowd(i)
                       and sum(v > 0 for v in i.visibility) >= rules.min_visible_keypoints),
                      key=lambda i: i.image_id)

    def crowd_list(self) -> str:
        """The crowd list in the published file's format: 12-digit zero-padded ids, one a line, LF, a final
        newline, no blank lines, not sorted (the real one follows the authors' directory order)."""
        ids = sorted((i.image_id for i in self.images if i.listed_crowd), reverse=True)
        return "".join(f"{image_id:012d}\n" for image_id in ids)


def default_dataset() -> FakeAP10K:
    """Species get ids round-robin (so they interleave); special images sit at the end, in what would be test."""
    counts = {"cat": 10, "lion": 6, "dog": 6, "arctic fox": 5, "black bear": 4}
    order = []
    while any(counts.values()):
        for species in list(counts):
            if counts[species]:
                order.append(species)
                counts[species] -= 1
    data = FakeAP10K([FakeImage(i + 1, s, regular_visibility(i + 1)) for i, s in enumerate(order)])
    next_id = len(order) + 1
    data.images.append(FakeImage(next_id, "cat", regular_visibility(next_id), extra_annotations=1,
                                 listed_crowd=True))  # crowd by either rule
    data.images.append(FakeImage(next_id + 1, "dog", [2, 2] + [0] * 15))  # too few keypoints
    sparse = next((i for i in reversed(data.images) if i.species == "lion"))
    sparse.visibility = [2, 2, 2] + [0] * 14  # exactly 3 visible: kept, but pairs only with some partners
    bear = next((i for i in reversed(data.images) if i.species == "black bear"))
    bear.visibility = [1] * 17  # visible under v>0 only
    faint = next((i for i in reversed(data.images) if i.species == "arctic fox"))
    faint.visibility = [1] * 5 + [0] * 12  # 5 keypoints at v = 1: each counts half, so no pair reaches 3
    return data


def write_raw(raw: Path, data: FakeAP10K | None = None) -> FakeAP10K:
    """Write ``raw/annotations/ap10k-*-split1.json`` (plus split2, unused) and ``raw/data/<id>.jpg``."""
    data = data or default_dataset()
    categories = [
        {"id": CATEGORY_IDS[s], "name": s, "supercategory": family, "keypoints": list(KEYPOINT_NAMES),
         "skeleton": [[1, 2], [1, 3], [2, 3], [3, 4], [4, 5]]}
        for family, species in FAMILIES.items() for s in species
    ]
    files = {name: {"info": {"description": "AP-10k", "version": "1.0"}, "licenses": [], "images": [],
                    "annotations": [], "categories": categories} for name in SPLIT_FILES}
    annotation_id = 1
    (raw / "data").mkdir(parents=True, exist_ok=True)
    for image in data.images:
        target = files[SPLIT_FILES[image.image_id % 3]]
        width, height = image.size
        target["images"].append({"license": 1, "id": image.image_id, "file_name": f"{image.image_id:012d}.jpg",
                                 "width": width, "height": height, "background": 1})
        target["annotations"].append(image.annotation(annotation_id))
        annotation_id += 1
        for extra in range(image.extra_annotations):  # another animal, in a split file merged later (or the same)
            other = files[SPLIT_FILES[min(image.image_id % 3 + 1 + extra, 2)]]
            second = image.annotation(annotation_id)
            if not image.extra_keypoints:
                second["keypoints"] = [0] * 51
                second["num_keypoints"] = 0
            other["annotations"].append(second)
            annotation_id += 1
        colour = (image.image_id * 37 % 256, image.image_id * 91 % 256, 128)
        Image.new("RGB", image.size, colour).save(raw / "data" / f"{image.image_id:012d}.jpg", quality=90)
    (raw / "annotations").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (raw / "annotations" / name).write_text(json.dumps(content))
    (raw / "annotations" / "ap10k-train-split2.json").write_text(json.dumps(files[SPLIT_FILES[0]]))
    return data


def many_images_of_one_species(count: int, species: str = "cat") -> FakeAP10K:
    """``count`` regular images of one species (to show the default 30 / 20 split), plus one of each other."""
    images = [FakeImage(i, species, regular_visibility(i)) for i in range(1, count + 1)]
    others = [s for s in CATEGORY_IDS if s != species]
    images += [FakeImage(count + 1 + i, s, regular_visibility(count + 1 + i)) for i, s in enumerate(others)]
    return FakeAP10K(images)


def crowd_rules_disagree() -> FakeAP10K:
    """Where the published list and the derived rule part ways, as on the real annotations: cats 1-8 are
    regular; cat 20 shows two separate animals (two annotated instances) but is not on the list; cat 21 is on
    the list with a single annotation; cat 22 is crowd by both rules. With 3 test images per species, the list
    rule's cat test list is 7, 8, 20 and the derived rule's 7, 8, 21."""
    data = many_images_of_one_species(8)
    data.images += [
        FakeImage(20, "cat", regular_visibility(20), extra_annotations=1, extra_keypoints=True),
        FakeImage(21, "cat", regular_visibility(21), listed_crowd=True),
        FakeImage(22, "cat", regular_visibility(22), extra_annotations=1, listed_crowd=True),
    ]
    return data


def rewrite_pair_paths(dataset: Path, style: str) -> None:
    """Turn a corrbench build into what GeoAware-SC ("geoaware": paths relative to its repository) or MARCO
    ("marco": absolute paths on another machine) write, without a manifest."""
    prefix = {"geoaware": "data/ap-10k/", "marco": "/home/someone/MARCO/data/ap-10k/"}[style]
    for path in (dataset / "PairAnnotation").rglob("*.json"):
        content = json.loads(path.read_text())
        path.write_text(json.dumps({key: prefix + value for key, value in content.items()}, indent=4))
    (dataset / "manifest.json").unlink()
