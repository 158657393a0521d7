"""Rebuilding MARCO's five MP-100 pair lists from MP-100's test annotations (``corrbench build-mp100``), seeded
and byte-identical on every run.

The curation, and where each choice comes from:

1. Which annotations: the union of the five ``mp100_split{1..5}_test.json`` files (``annotations.py`` says why).
2. One instance per image and category: the annotation of that category with the most visible keypoints
   (ties: the lowest annotation id). MARCO's loader instead concatenates the keypoints of every instance in
   the image; corrbench pairs one object with one object. Visible means COCO ``v > 0`` (MARCO's loader).
3. Drop instances with fewer than ``MIN_VISIBLE`` = 3 visible keypoints (paper, Supp. G).
4. Remove the categories overlapping SPair-71k's training classes (``SPAIR_OVERLAP``, the paper's list).
5. The five domains and their categories: ``layout.DOMAINS`` and ``layout.CATEGORIES`` (derived from the
   category ids in MARCO's released lists and MP-100's category names; ``layout.py`` lists the choices).
6. Pairs: ordered (source, target) pairs of two different images of one category that share at least
   ``MIN_SHARED`` = 3 keypoints visible in both (corrbench's choice, the per-image bar of step 3 applied to
   the pair, as AP-10K's test pairs do, so that no pair is unscorable).
7. Stratified sampling, ``pairs_per_domain`` (2,000) per domain, so that no class dominates: each category
   gets an equal share; the remainder goes one pair each to the first categories in sorted name order; a
   category with fewer eligible pairs than its share gives all it has, and what it could not give is shared
   again, by the same rule, among the categories that still have pairs. Within a category the pairs taken
   are the ones with the smallest ``sha256(seed, category id, source, target)``, and the domain's list is
   ordered by ``sha256(seed, domain, source, target)`` (its position is ``episode_idx``). Hash ranks instead
   of a random generator make the lists independent of Python and numpy versions and of reading order.

What differs from MARCO's released lists (why ``--official`` exists, ``release.py``): MARCO draws each
episode's category at random (its category counts vary, e.g. 485 to 532 pairs per furniture category) and its
lists use at most 100 distinct images per category (a pool it does not describe); the rebuilt lists have equal
counts and use every eligible image. The two kinds of lists are different pair sets: results name the kind in
every pair id.

The lists do not need the images: the builder reports which folders and files are missing, and evaluation
reports pairs with a missing image as skipped ("missing image").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ...errors import ConfigError
from .annotations import AnnotationIndex, check_category_names, load_annotations
from .install import write_lists
from .layout import CATEGORIES, DOMAINS, SPAIR_OVERLAP, PairEntry, domain_categories
from .report import print_problems, report_lines


MIN_VISIBLE = 3  # an instance needs this many visible keypoints (MARCO, Supp. G)
MIN_SHARED = 3  # a rebuilt pair needs this many keypoints visible in both images (corrbench)
PAIRS_PER_DOMAIN = 2000


@dataclass(frozen=True)
class _Candidate:
    file_name: str
    mask: int
    num_keypoints: int


def _rank(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def allocate(total: int, capacity: Mapping[str, int]) -> dict[str, int]:
    """Stratified quotas: equal shares, the remainder to the first names in sorted order; a name that cannot
    fill its share gives the rest back to be shared again among the others by the same rule."""
    quota = {name: 0 for name in capacity}
    left = total
    open_names = sorted(n for n in capacity if capacity[n] > 0)
    while left > 0 and open_names:
        share, extra = divmod(left, len(open_names))
        for i, name in enumerate(open_names):
            take = min(share + (i < extra), capacity[name] - quota[name])
            quota[name] += take
            left -= take
        open_names = [n for n in open_names if quota[n] < capacity[n]]
    return quota


def _curate(index: AnnotationIndex) -> tuple[dict[int, list[_Candidate]], dict[int, int]]:
    """Per benchmark category, its images that keep an instance with >= MIN_VISIBLE visible keypoints."""
    candidates: dict[int, list[_Candidate]] = {c.id: [] for c in CATEGORIES}
    dropped: dict[int, int] = {c.id: 0 for c in CATEGORIES}
    for file_name in sorted(index.instances):
        for category_id in sorted({i.category_id for i in index.instances[file_name]} & candidates.keys()):
            instance = index.instance(file_name, category_id)
            if instance.num_visible < MIN_VISIBLE:
                dropped[category_id] += 1
            else:
                candidates[category_id].append(_Candidate(file_name, instance.visible_mask, len(instance.visible)))
    return candidates, dropped


def _eligible_pairs(images: list[_Candidate]) -> list[tuple[str, str]]:
    return [
        (a.file_name, b.file_name)
        for a in images
        for b in images
        if a is not b and a.num_keypoints == b.num_keypoints and (a.mask & b.mask).bit_count() >= MIN_SHARED
    ]


def sample_domain(domain: str, candidates: Mapping[int, list[_Candidate]], total: int, seed: int) -> list[PairEntry]:
    """``total`` pairs of ``domain`` by stratified, hash-ranked sampling (see the module docstring)."""
    categories = sorted(domain_categories(domain), key=lambda c: c.name)
    eligible = {c.name: _eligible_pairs(candidates.get(c.id, [])) for c in categories}
    quota = allocate(total, {name: len(pairs) for name, pairs in eligible.items()})
    chosen: list[tuple[str, int, str, str]] = []
    for category in categories:
        pairs = sorted(eligible[category.name], key=lambda p: _rank("pair", seed, category.id, *p))
        chosen += [(_rank("order", seed, domain, src, trg), category.id, src, trg)
                   for src, trg in pairs[: quota[category.name]]]  # fmt: skip
    chosen.sort()
    return [PairEntry(i, cid, src, trg) for i, (_, cid, src, trg) in enumerate(chosen)]


def build_mp100(
    annotations_root: Path,
    images_root: Path,
    out_root: Path,
    *,
    seed: int = 0,
    pairs_per_domain: int = PAIRS_PER_DOMAIN,
    progress: bool = True,
) -> dict[str, Any]:
    """Rebuild the five pair lists from MP-100's test annotations into ``<out_root>/MP-100/pairs/``.

    ``out_root`` is the data root. Deterministic: the same annotation files, seed and count give the same
    bytes. Images are not needed to build the lists; the ones missing under ``images_root`` are reported
    (printed, and in the manifest) because evaluation will skip their pairs. Returns the manifest.
    """
    if pairs_per_domain < 1:
        raise ConfigError(f"pairs_per_domain must be >= 1, got {pairs_per_domain}")
    index = load_annotations(annotations_root)
    check_category_names(index)
    candidates, dropped = _curate(index)
    lists: dict[str, list[PairEntry]] = {}
    for domain in DOMAINS:
        lists[domain] = sample_domain(domain, candidates, pairs_per_domain, seed)
    present_ids = {i.category_id for instances in index.instances.values() for i in instances}
    curation = {
        "annotation_files": dict(sorted(index.files.items())),
        "min_visible_keypoints": MIN_VISIBLE,
        "min_shared_keypoints": MIN_SHARED,
        "removed_spair_overlap": sorted(SPAIR_OVERLAP[c] for c in present_ids & SPAIR_OVERLAP.keys()),
        "instances_below_min_visible": {c.name: dropped[c.id] for c in sorted(CATEGORIES, key=lambda c: c.name)
                                        if dropped[c.id]},  # fmt: skip
        "categories_without_images": sorted(c.name for c in CATEGORIES if not candidates[c.id]),
        "malformed_annotations": index.problem_count(),
    }
    manifest = write_lists(out_root, "rebuilt", lists, index, images_root,
                            {"seed": seed, "pairs_per_domain": pairs_per_domain, "curation": curation})  # fmt: skip
    if progress:
        print_problems(index)
        print("\n".join(report_lines(manifest, images_root)))
    return manifest
