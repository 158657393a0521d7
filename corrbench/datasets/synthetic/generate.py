"""Writing the synthetic dataset: each category's images split into trn / val / test, SPair-71k's JSON records,
the pairs, and the manifest, built in a hidden folder and swapped into place."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import DataError
from ...files import replacing_directory
from .layout import (
    CATEGORIES,
    GENERATOR_VERSION,
    JPEG_QUALITY,
    KEYPOINTS,
    MANIFEST_NAME,
    MIN_PAIR_KEYPOINTS,
    SEGMENTATION_LABELS,
    SPLITS,
    SRC_DATABASE,
    check_generation_arguments,
)
from .render import Instance, render_instance

# Independent random streams: one per (category, image) and one per (split, category) for pair sampling.
_IMAGE_STREAM, _PAIR_STREAM = 1, 2


def _split_sizes(n: int) -> dict[str, int]:
    n_test = max(2, round(n / 3))
    n_val = max(2, round(n / 6))
    return {"trn": n - n_test - n_val, "val": n_val, "test": n_test}


def _azimuth_id(rotation: float) -> int:
    """In-plane rotation binned in 10-degree steps over [-40, 40): 0..7 (SPair's azimuth_id has 8 bins)."""
    return int(min(7, max(0, math.floor((rotation + 40.0) / 10.0))))


def _image_json(name: str, category: str, inst: Instance, kps: list) -> dict:
    W, H = inst.size
    return {
        "filename": f"{name}.jpg",
        "src_database": SRC_DATABASE,
        "src_annotation": SRC_DATABASE,
        "src_image": f"{name}.jpg",
        "image_width": W,
        "image_height": H,
        "image_depth": 3,
        "category": category,
        "pose": "Unspecified",
        "truncated": inst.truncated,
        "occluded": inst.occluded,
        "difficult": 0,
        "bndbox": list(inst.bndbox),
        "kps": {str(i): (None if p is None else list(p)) for i, p in enumerate(kps)},
        "azimuth_id": _azimuth_id(inst.rotation),
    }


def _mutual(a: list, b: list) -> list[int]:
    return [i for i, (p, q) in enumerate(zip(a, b)) if p is not None and q is not None]


def _pair_json(pair_id: int, category: str, src: str, trg: str, a: Instance, b: Instance, ids: list[int],
               a_kps: list, b_kps: list) -> dict:
    if a.mirrored != b.mirrored:
        view = 2
    else:
        dr = abs(a.rotation - b.rotation)
        view = 0 if dr < 15 else 1 if dr < 35 else 2
    ratio = max(a.object_size, b.object_size) / max(min(a.object_size, b.object_size), 1e-6)
    return {
        "pair_id": pair_id,
        "src_imname": f"{src}.jpg",
        "trg_imname": f"{trg}.jpg",
        "src_imsize": [*a.size, 3],
        "trg_imsize": [*b.size, 3],
        "src_bndbox": list(a.bndbox),
        "trg_bndbox": list(b.bndbox),
        "src_pose": "Unspecified",
        "trg_pose": "Unspecified",
        "src_kps": [list(a_kps[i]) for i in ids],
        "trg_kps": [list(b_kps[i]) for i in ids],
        "kps_ids": [str(i) for i in ids],
        "category": category,
        "mirror": int(a.mirrored != b.mirrored),
        "viewpoint_variation": view,
        "scale_variation": 0 if ratio < 1.25 else 1 if ratio < 1.6 else 2,
        "truncation": a.truncated + 2 * b.truncated,
        "occlusion": a.occluded + 2 * b.occluded,
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=False).encode("utf-8")


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(array, "RGB").save(buf, "JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False)
    else:
        Image.fromarray(array, "L").save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def generate_synthetic(root: Path, *, seed: int = 0, images_per_category: int = 12,
                       pairs_per_category: dict[str, int] | None = None, progress: bool = False) -> dict:
    """Write the synthetic benchmark under ``root`` (which must not exist or be empty) and return its manifest.

    The dataset is built in a hidden sibling folder and moved into place at the end
    (``files.replacing_directory``), so an interrupted run never leaves a partial dataset at ``root``.

    Manifest (``root/synthetic_manifest.json``, written last): ``generator_version``, ``seed``,
    ``arguments`` (``images_per_category``, requested ``pairs_per_category``), ``categories`` (per category
    ``keypoints`` = seen names and ``unseen`` names, in id order), ``splits`` (image names per split and
    category), ``images`` (per image: ``category``, ``split``, ``mirrored``, ``rotation_deg`` (positive =
    clockwise on screen), ``object_size`` (sqrt of the amodal object box area, px), ``truncated``,
    ``occluded``), ``counts`` (``images``, ``pairs`` per split, ``pairs_requested`` per split,
    ``extra_pairs``, ``files``) and ``sha256``: the SHA-256 over every other written file, taken in sorted
    relative-path order as ``path NUL size NUL bytes``.
    """
    pairs_wanted = check_generation_arguments(seed, images_per_category, pairs_per_category)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(
            f"synthetic dataset root {root} already exists and is not an empty folder",
            hint="pass a new path, or remove the old dataset first",
        )
    with replacing_directory(root) as tmp:
        manifest = _generate_into(tmp, int(seed), int(images_per_category), pairs_wanted, progress)
    return manifest


class _Writer:
    """Writes the files into the staging folder and keeps their bytes for the manifest's checksum."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, bytes] = {}

    def __call__(self, rel: str, data: bytes) -> None:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files[rel] = data

    def sha256(self) -> str:
        """SHA-256 over every written file in sorted relative-path order, as ``path NUL size NUL bytes``."""
        digest = hashlib.sha256()
        for rel in sorted(self.files):
            data = self.files[rel]
            digest.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
            digest.update(data)
        return digest.hexdigest()


@dataclass
class _Images:
    """The drawn images: per category, the instances and names in index order; per split and category, the
    names; per name, the manifest's record."""

    instances: dict[str, list[Instance]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)
    by_split: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {sp: {} for sp in SPLITS})
    records: dict[str, dict] = field(default_factory=dict)


def _generate_into(tmp: Path, seed: int, n_images: int, pairs_wanted: dict[str, int], progress: bool) -> dict:
    write = _Writer(tmp)
    images = _write_images(write, seed, n_images, progress)
    pair_counts, extra_count = _write_pairs(write, images, seed, pairs_wanted)
    manifest = {
        "name": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "arguments": {
            "images_per_category": n_images,
            "pairs_per_category": {sp: pairs_wanted[sp] for sp in SPLITS},
        },
        "categories": {
            cat: {"id": SEGMENTATION_LABELS[cat], "keypoints": list(KEYPOINTS[cat][0]), "unseen": list(KEYPOINTS[cat][1])}
            for cat in CATEGORIES
        },
        "splits": {sp: {cat: list(images.by_split[sp].get(cat, [])) for cat in CATEGORIES} for sp in SPLITS},
        "images": images.records,
        "counts": {
            "images": n_images * len(CATEGORIES),
            "pairs": pair_counts,
            "pairs_requested": {sp: pairs_wanted[sp] * len(CATEGORIES) for sp in SPLITS},
            "extra_pairs": extra_count,
            "files": len(write.files),
        },
        "sha256": write.sha256(),
    }
    write(MANIFEST_NAME, json.dumps(manifest, sort_keys=False, indent=1).encode("utf-8") + b"\n")
    return manifest


def _write_images(write: _Writer, seed: int, n_images: int, progress: bool) -> _Images:
    """Draw every category's images (each from its own random stream) and write their files."""
    sizes = _split_sizes(n_images)
    bounds = {"trn": (0, sizes["trn"]), "val": (sizes["trn"], sizes["trn"] + sizes["val"]),
              "test": (sizes["trn"] + sizes["val"], n_images)}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_images * len(CATEGORIES), desc="synthetic images", unit="img")
    images = _Images()
    for ci, cat in enumerate(CATEGORIES):
        images.instances[cat], images.names[cat] = [], []
        for ii in range(n_images):
            rng = np.random.default_rng([seed, _IMAGE_STREAM, ci, ii])
            inst = render_instance(rng, cat, SEGMENTATION_LABELS[cat])
            name = f"{cat}_{ii + 1:04d}"
            split = next(sp for sp, (a, b) in bounds.items() if a <= ii < b)
            images.instances[cat].append(inst)
            images.names[cat].append(name)
            images.by_split[split].setdefault(cat, []).append(name)
            write(f"JPEGImages/{cat}/{name}.jpg", _encode(inst.image, "JPEG"))
            write(f"Segmentation/{cat}/{name}.png", _encode(inst.seg, "PNG"))
            write(f"ImageAnnotation/{cat}/{name}.json", _dumps(_image_json(name, cat, inst, inst.kps)))
            if split == "test":
                write(f"ExtraImageAnnotation/{cat}/{name}.json", _dumps(_image_json(name, cat, inst, inst.unseen)))
            images.records[name] = {
                "category": cat, "split": split, "mirrored": inst.mirrored, "rotation_deg": inst.rotation,
                "object_size": inst.object_size, "truncated": inst.truncated, "occluded": inst.occluded,
            }
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return images


def _write_pairs(write: _Writer, images: _Images, seed: int, pairs_wanted: dict[str, int]) -> tuple[dict, int]:
    """Each split's pair files and layout lists; returns the pairs per split and the number of extra pairs."""
    pair_counts, extra_count = {}, 0
    for si, split in enumerate(SPLITS):
        stems: list[str] = []
        for ci, cat in enumerate(CATEGORIES):
            extra_count += _write_category_pairs(write, images, cat, split, stems,
                                                 np.random.default_rng([seed, _PAIR_STREAM, si, ci]),
                                                 pairs_wanted[split])
        pair_counts[split] = len(stems)
        layout = "".join(f"{s}\n" for s in stems).encode("utf-8")
        write(f"Layout/large/{split}.txt", layout)
        write(f"Layout/small/{split}.txt", layout)
    return pair_counts, extra_count


def _write_category_pairs(write: _Writer, images: _Images, cat: str, split: str, stems: list[str],
                          rng: np.random.Generator, wanted: int) -> int:
    """Up to ``wanted`` pairs of one category and split, in a seeded order, each with at least
    ``MIN_PAIR_KEYPOINTS`` seen keypoints visible in both; appends their stems. Returns the extra pairs written."""
    names, instances = images.names[cat], images.instances[cat]
    idx = [names.index(n) for n in images.by_split[split].get(cat, [])]
    candidates = [(a, b) for a in idx for b in idx if a != b]
    order = rng.permutation(len(candidates))
    taken = extra = 0
    for k in order:
        if taken >= wanted:
            break
        a, b = candidates[int(k)]
        A, B = instances[a], instances[b]
        ids = _mutual(A.kps, B.kps)
        if len(ids) < MIN_PAIR_KEYPOINTS:
            continue
        taken += 1
        pid = len(stems) + 1
        src, trg = names[a], names[b]
        stem = f"{pid:06d}-{src}-{trg}:{cat}"
        stems.append(stem)
        write(f"PairAnnotation/{split}/{stem}.json", _dumps(_pair_json(pid, cat, src, trg, A, B, ids, A.kps, B.kps)))
        if split == "test":
            uids = _mutual(A.unseen, B.unseen)
            if uids:
                extra += 1
                write(f"ExtraPairAnnotation/test/{stem}.json",
                      _dumps(_pair_json(pid, cat, src, trg, A, B, uids, A.unseen, B.unseen)))
    return extra
