"""Build the AP-10K correspondence benchmark (Zhang et al. 2024, GeoAware-SC) from the raw AP-10K download.

AP-10K (Yu et al. 2021) is an animal pose dataset: COCO keypoint files, 54 species in 23 families, 17 keypoints,
visibility ``v`` in {0, 1, 2}. GeoAware-SC's ``prepare_ap10k.ipynb`` turned it into image pairs, and MARCO's
``scripts/preprocess_ap10k.py`` is a copy of that notebook. This module applies the same protocol, but
deterministically: the result depends only on the annotation files, the seed and the crowd list.

The input and output folders are described in ``layout.py``; ``raw.py`` reads the download and ``pairs.py``
makes the protocol's decisions, which this module writes. The output is the folder layout both reference
scripts write: corrbench's reader reads theirs, and their loaders read this one when its paths are written as
they open them, from their repository root: ``path_prefix="data/ap-10k/"`` (``--path-prefix``) writes such
paths (the pair set and its hash do not change).

The protocol (both reference scripts, verified in their code):

1. Merge the annotations of split1 in the order train, test, val; keep each image's first annotation.
2. Per species: drop crowd images, keep images whose COCO ``num_keypoints`` field is >= 3; of the rest, the last
   30 are test, the 20 before them val, the others train.
3. Intra-species pairs, per species and split: every unordered pair of images whose mutual visibility score
   ``sum_k (v_src,k / 2) * (v_trg,k / 2)`` is >= 3 (so a keypoint with v = 1 in one image counts half; with
   v in {0, 2} it is the number of keypoints visible in both). Val and test keep all of them; train keeps at
   most 50 x (number of train images of the species), sampled.
4. Cross-species pairs, per family with more than one species: pairs of images of two different species of
   the family (test and val lists), same score rule, at most 900 (test) / 400 (val) per family, sampled; each
   pair's direction is drawn at random.
5. Cross-family pairs, per pair of families: an image of the first family (source) and one of the second
   (target), same score rule, at most 30 (test) / 20 (val) per family pair, sampled.
6. Training readers skip argali sheep, black bear and king cheetah (too few images for a train list).

Where corrbench differs from the reference scripts, and why:

- Order. The scripts list each species' files in ``os.walk`` order, which is the file system's directory
  order (hash order on ext4), so their test/val/train images depend on the machine. corrbench sorts images by
  id (the same as by file name) and walks families and species in sorted order.
- Sampling. The scripts draw with Python's global ``random`` (GeoAware-SC seeds 42 per notebook cell; MARCO
  does not seed), so their draws also depend on the walk order. corrbench ranks candidate pairs by a keyed
  64-bit hash of (seed, pair folder, group, source id, target id) and keeps the lowest ranks; the direction of
  an intra- or cross-species pair is another hash bit. This is a uniform draw without replacement that does
  not depend on Python's ``random`` algorithms, iteration order, or on the other groups (adding an image to one
  species changes no other species' pairs). The default seed is 42, as GeoAware-SC's.
- Cross-species direction. GeoAware-SC's notebook computes a random swap but discards it (it assigns to the
  loop variable), so its sources always come from the first species of the combination; MARCO's copy applies
  the swap. corrbench applies it, as the notebook intends.
- Crowd images: nothing differs by default. Both scripts read GeoAware-SC's ``data/ap-10k_is_crowd.txt``
  (1,847 zero-padded 12-digit image ids, one a line, LF, no blank lines, unsorted: grouped by species in the
  authors' directory order; MARCO's data guide fetches the same file from GeoAware-SC's master branch) and
  drop an image when its annotation file's stem is on it, before the keypoint filter. corrbench downloads that
  file when building (``CROWD_LIST_SOURCE``: pinned to its commit, size and sha256) into
  ``<data root>/ap-10k_is_crowd.txt``, GeoAware-SC's own place for it relative to its data folder. It is
  downloaded, not shipped, because it carries no license. Offline, save it there by hand. ``--crowd-list PATH``
  builds with another copy or another list; ``--crowd-rule derived`` instead treats an image as crowd when the
  merged split1 files hold more than one annotation for it or any of its annotations has ``iscrowd`` = 1. On
  the real annotations the derived rule disagrees with the list both ways (images with two separate animals
  that the list keeps, listed images with one annotation), so most species' test lists change. The manifest
  records the rule (``crowd.rule``: ``published-list``, ``other-list`` or ``derived``), the list's sha256 and
  how far the list and the derived rule agree; readers copy the rule into every result, and both warn when it
  is not the published list.
- Path fields in pair files are relative to the dataset folder (portable), unless a path prefix is given.
- Missing images, malformed COCO records and inconsistent ids are errors, never silently dropped: a
  benchmark must not depend on which files happened to be present.

Splits of AP-10K's own pose benchmark (split2, split3) are not used, as in both references.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable

from ...errors import ConfigError, DataError
from ...files import file_sha256, replacing_directory
from ..download import fetch_source
from . import layout  # layout.CROWD_LIST_SOURCE is read at call time: tests point it at a local server
from .layout import (
    CROSS_FAMILY_SUFFIX,
    CROSS_SPECIES_SUFFIX,
    CROWD_RULES,
    DERIVED_CROWD_RULE,
    IMAGE_DIR,
    MANIFEST,
    MANIFEST_FORMAT,
    PAIR_DIR,
    PAIR_PATH_FIELDS,
    SPLIT_LISTS,
    crowd_rule_of,
    crowd_warning,
    pair_stem,
)
from .pairs import BuildRules, Plan, pair_list_sha256, plan_pairs, plan_splits
from .raw import RawAP10K, read_crowd_list, read_raw

log = logging.getLogger(__name__)

#: The "builder" a manifest names: the module's name when manifest format 2 was defined, kept as written so that
#: a build is byte-identical to earlier builds (it is a label in the file, not an import path).
MANIFEST_BUILDER = "corrbench.datasets.ap10k_build"


# ------------------------------------------------------------------------------------------------- writing


def _place_image(source: Path, destination: Path) -> None:
    """Hard-link (no extra disk space, raw stays intact), or copy when the file systems differ."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="file", leave=False)


def _write(tmp: Path, raw: RawAP10K, plan: Plan, progress: bool, prefix: str) -> None:
    missing = [raw.root / "data" / r.file_name for r in raw.images.values()
               if not (raw.root / "data" / r.file_name).is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{len(missing)} annotated AP-10K image(s) missing under {raw.root / 'data'}: {listed}",
            hint="the download is incomplete; extract ap-10k.zip again (all of data/ is needed)",
        )
    records = [raw.images[i] for i in sorted(raw.images)]
    for record in _progress(records, len(records), "AP-10K images", progress):
        json_file, jpeg_file = tmp / record.json_path, tmp / record.jpeg_path
        json_file.parent.mkdir(parents=True, exist_ok=True)
        jpeg_file.parent.mkdir(parents=True, exist_ok=True)
        data = {**record.record, "is_crowd": 1} if record.crowd else record.record
        json_file.write_text(json.dumps(data, indent=4), encoding="utf-8")
        _place_image(raw.root / "data" / record.file_name, jpeg_file)
    for family, species_splits in plan.splits.items():
        for species, splits in species_splits.items():
            folder = tmp / IMAGE_DIR / family / species
            for split, name in SPLIT_LISTS.items():
                lines = "".join(f"{prefix}{r.json_path}\n" for r in splits[split])
                (folder / name).write_text(lines, encoding="utf-8")
    items = [(folder, pair) for folder, pairs in plan.pairs.items() for pair in pairs]
    for folder in plan.pairs:
        (tmp / PAIR_DIR / folder).mkdir(parents=True, exist_ok=True)
    for folder, (src, trg, category) in _progress(items, len(items), "AP-10K pairs", progress):
        ends = {"src": src, "trg": trg}
        content = {field: prefix + raw.images[ends[end]].json_path for end, field in PAIR_PATH_FIELDS.items()}
        (tmp / PAIR_DIR / folder / f"{pair_stem(src, trg, category)}.json").write_text(
            json.dumps(content, indent=4), encoding="utf-8")


# ----------------------------------------------------------------------------------------------- the build


def published_crowd_list(data_root: Path, progress: bool = True) -> Path:
    """GeoAware-SC's crowd list under ``data_root`` (downloaded when absent), checked against its pinned sha256."""
    source = layout.CROWD_LIST_SOURCE
    try:
        path = fetch_source(source, data_root, progress=progress)
    except DataError as exc:
        alternatives = ("or build without downloading it: --crowd-list PATH (a copy elsewhere) or --crowd-rule "
                        "derived (not the papers' test lists)")
        raise DataError(exc.message, hint=f"{exc.hint}; {alternatives}" if exc.hint else alternatives) from None
    digest = file_sha256(path)
    if digest != source.sha256:
        raise DataError(f"{path} is not GeoAware-SC's published crowd list (sha256 {digest}, expected "
                        f"{source.sha256})",
                        hint=f"delete it to download the list again from {source.url}, or pass it with "
                             "--crowd-list to build with it as it is (recorded as another list)")
    return path


def _crowd_set(raw: RawAP10K, rule: str, crowd_list: Path | None, data_root: Path,
               progress: bool) -> tuple[set[int], dict[str, Any]]:
    """The crowd image ids and the manifest's description of where they came from."""
    derived = {i for i, n in raw.annotation_counts.items() if n > 1} | raw.iscrowd_ids
    if rule not in CROWD_RULES:
        raise ConfigError(f"unknown crowd rule {rule!r}", hint=f"use one of {', '.join(CROWD_RULES)}")
    if rule == "derived":
        if crowd_list is not None:
            raise ConfigError("--crowd-list and --crowd-rule derived exclude each other",
                              hint="a crowd list is only read by the list rule (the default)")
        return derived, {"rule": "derived", "definition": DERIVED_CROWD_RULE, "ids": len(derived),
                         "published_list_sha256": layout.CROWD_LIST_SOURCE.sha256}
    path = Path(crowd_list) if crowd_list is not None else published_crowd_list(data_root, progress)
    listed, digest = read_crowd_list(path)
    annotated = listed & set(raw.images)
    return listed, {
        "rule": "published-list" if digest == layout.CROWD_LIST_SOURCE.sha256 else "other-list",
        "source": str(path) if crowd_list is not None else layout.CROWD_LIST_SOURCE.url,
        "list_sha256": digest, "published_list_sha256": layout.CROWD_LIST_SOURCE.sha256,
        "ids": len(listed), "ids_annotated": len(annotated),
        "derived": {"definition": DERIVED_CROWD_RULE, "ids": len(derived)},
        "agreement": {"listed_and_derived": len(listed & derived), "listed_only": len(annotated - derived),
                      "derived_only": len(derived - listed)},
    }


def build_ap10k(raw_root: Path, out_root: Path, *, seed: int = 42, progress: bool = True,
                crowd_rule: str = "list", crowd_list: Path | None = None, data_root: Path | None = None,
                path_prefix: str = "", rules: BuildRules = BuildRules()) -> dict[str, Any]:
    """Build the benchmark from the raw download at ``raw_root`` into ``out_root`` (replaced atomically).

    ``crowd_rule``: ``"list"`` drops the images of a crowd list: ``crowd_list`` if given, else GeoAware-SC's
    published list, downloaded into ``data_root`` (default: the folder holding ``out_root``) on first use;
    ``"derived"`` derives them from the annotations (see the module docstring), which logs a warning, as does
    a list other than the published one.
    ``path_prefix``: written before the ``ImageAnnotation/...`` paths of pair files and split lists
    (``"data/ap-10k/"`` for the reference loaders). Returns the manifest (also written to
    ``out_root/manifest.json``). The same inputs and arguments give byte-identical output on any machine.
    Raises DataError for a missing or malformed download.
    """
    if "\\" in path_prefix or (path_prefix and not path_prefix.endswith("/")):
        raise DataError(f"path prefix {path_prefix!r} must use '/' and end with '/'", hint="e.g. data/ap-10k/")
    out_root = Path(out_root)
    raw = read_raw(Path(raw_root))
    data_root = Path(data_root) if data_root is not None else out_root.parent
    crowd, crowd_info = _crowd_set(raw, crowd_rule, crowd_list, data_root, progress)
    plan = plan_splits(raw, crowd, rules)
    plan_pairs(plan, rules, seed)
    manifest = _manifest(raw, plan, rules, seed, crowd_info, path_prefix)
    warning = crowd_warning(manifest)
    if warning:
        log.warning("warning: %s", warning)

    with replacing_directory(out_root) as tmp:  # readers see the old build or the new one, never a mix
        _write(tmp, raw, plan, progress, path_prefix)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _manifest(raw: RawAP10K, plan: Plan, rules: BuildRules, seed: int, crowd_info: dict[str, Any],
              path_prefix: str) -> dict[str, Any]:
    counts = {folder: len(items) for folder, items in plan.pairs.items()}
    per_species = plan.per_species
    images = {key: sum(s[key] for s in per_species.values())
              for key in ("annotated", "crowd", "too_few_keypoints", "trn", "val", "test")}
    return {
        "dataset": "AP-10K correspondence benchmark (GeoAware-SC protocol)",
        "format": MANIFEST_FORMAT,
        "builder": MANIFEST_BUILDER,
        "seed": seed,
        "rules": {**asdict(rules), "cross_species_pairs": dict(rules.cross_species_pairs),
                  "cross_family_pairs": dict(rules.cross_family_pairs)},
        "crowd": crowd_info,
        "path_prefix": path_prefix,
        "inputs": raw.checksums,
        "pair_list_sha256": pair_list_sha256(plan.pairs),
        "statistics": {
            "families": len(plan.splits),
            "species": len(per_species),
            "images": images,
            "pairs": {
                "intra-species": {split: counts[split] for split in ("trn", "val", "test")},
                "cross-species": {s: counts[s + CROSS_SPECIES_SUFFIX] for s, _ in rules.cross_species_pairs},
                "cross-family": {s: counts[s + CROSS_FAMILY_SUFFIX] for s, _ in rules.cross_family_pairs},
            },
            "per_species": dict(sorted(per_species.items())),
        },
    }


def format_statistics(manifest: dict[str, Any], out_root: Path) -> str:
    """A short human summary of a build."""
    stats = manifest["statistics"]
    images = stats["images"]
    crowd = manifest["crowd"]
    lines = [
        f"AP-10K benchmark written to {out_root} (seed {manifest['seed']})",
        f"  {stats['species']} species in {stats['families']} families; {images['annotated']} annotated images, "
        f"{images['crowd']} crowd and {images['too_few_keypoints']} with < "
        f"{manifest['rules']['min_visible_keypoints']} keypoints dropped",
        f"  images per split: trn {images['trn']}, val {images['val']}, test {images['test']}",
        f"  crowd images: {crowd_rule_of(manifest)} ({crowd['ids']} ids"
        + (f", sha256 {crowd['list_sha256']})" if "list_sha256" in crowd else ")"),
        "  pairs:",
    ]
    for setting, splits in stats["pairs"].items():
        lines.append(f"    {setting:<14} " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    lines.append(f"  pair list sha256: {manifest['pair_list_sha256']}")
    return "\n".join(lines)
