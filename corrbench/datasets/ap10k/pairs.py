"""The protocol's decisions, before anything is written: each species' split, and each pair folder's pairs.

Steps 2-5 of ``build.py``'s docstring: images are split by id; candidate pairs pass the mutual visibility score;
sampling ranks candidates by a keyed 64-bit hash (``pair_keys``) and keeps the lowest ranks, and the direction of
an intra- or cross-species pair is another hash bit. Nothing here reads or writes files.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Sequence

import numpy as np

from .layout import CROSS_FAMILY_CATEGORY, CROSS_FAMILY_SUFFIX, CROSS_SPECIES_SUFFIX, NUM_KEYPOINTS, pair_stem
from .raw import ImageRecord, RawAP10K


@dataclass(frozen=True)
class BuildRules:
    """The numbers of the protocol (defaults: GeoAware-SC's). Tests shrink them to keep fixtures small."""

    test_per_species: int = 30
    val_per_species: int = 20
    min_visible_keypoints: int = 3  # image filter (COCO num_keypoints) and pair filter (mutual score)
    train_pairs_per_image: int = 50
    cross_species_pairs: tuple[tuple[str, int], ...] = (("val", 400), ("test", 900))  # per family
    cross_family_pairs: tuple[tuple[str, int], ...] = (("test", 30), ("val", 20))  # per family pair

    def __post_init__(self) -> None:
        numbers = [self.test_per_species, self.val_per_species, self.min_visible_keypoints,
                   self.train_pairs_per_image, *dict(self.cross_species_pairs).values(),
                   *dict(self.cross_family_pairs).values()]
        if any(not isinstance(n, int) or n < 0 for n in numbers):
            raise ValueError(f"BuildRules numbers must be non-negative integers, got {self}")



def split_species(items: Sequence[Any], test_size: int = 30, val_size: int = 20) -> tuple[list, list, list]:
    """The last ``test_size`` items are test, the ``val_size`` before them val, the rest train.

    With fewer items, test takes what there is first, then val (the reference's ``min`` arithmetic).
    """
    n = len(items)
    n_test = min(test_size, n)
    n_val = min(val_size, n - n_test)
    n_train = n - n_test - n_val
    return list(items[:n_train]), list(items[n_train:n_train + n_val]), list(items[n_train + n_val:])


def mutual_visibility_score(v_src: np.ndarray, v_trg: np.ndarray) -> np.ndarray:
    """``4 * sum_k (v_src/2)(v_trg/2)`` for rows of visibility vectors, exactly, in integers (so >= 4 * 3)."""
    return np.asarray(v_src, dtype=np.int64) @ np.asarray(v_trg, dtype=np.int64).T


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele et al. 2014): a fixed, well-mixed bijection on uint64 arrays."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stream(seed: int, *names: str) -> np.uint64:
    digest = hashlib.sha256("\0".join([str(seed), *names]).encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def pair_keys(seed: int, stream: Sequence[str], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """A pseudo-random uint64 per (first, second) image-id pair, fixed by the seed and the stream names."""
    with np.errstate(over="ignore"):
        key = _splitmix64(_stream(seed, *stream) ^ np.asarray(first, dtype=np.uint64))
        return _splitmix64(key ^ np.asarray(second, dtype=np.uint64))


@dataclass
class Candidates:
    """Candidate pairs of one group (species, family or family pair), as image-id arrays."""

    src: np.ndarray
    trg: np.ndarray

    @classmethod
    def empty(cls) -> "Candidates":
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.src.shape[0])

    def concat(self, other: "Candidates") -> "Candidates":
        return Candidates(np.concatenate([self.src, other.src]), np.concatenate([self.trg, other.trg]))

    def sample(self, limit: int | None, seed: int, stream: Sequence[str]) -> "Candidates":
        """At most ``limit`` pairs, a uniform draw without replacement ranked by ``pair_keys``."""
        if limit is None or len(self) <= limit:
            return self
        keys = pair_keys(seed, stream, self.src, self.trg)
        order = np.lexsort((self.trg, self.src, keys))[:limit]
        return Candidates(self.src[order], self.trg[order])

    def randomly_directed(self, seed: int, stream: Sequence[str]) -> "Candidates":
        """Swap source and target of each pair on a pseudo-random bit."""
        swap = (pair_keys(seed, stream, self.src, self.trg) & np.uint64(1)).astype(bool)
        return Candidates(np.where(swap, self.trg, self.src), np.where(swap, self.src, self.trg))


def _ids(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.asarray([r.image_id for r in records], dtype=np.int64)


def _visibility(records: Sequence[ImageRecord]) -> np.ndarray:
    return np.stack([r.visibility for r in records]) if records else np.zeros((0, NUM_KEYPOINTS), dtype=np.int64)


def _within(records: Sequence[ImageRecord], min_visible: int) -> Candidates:
    """Unordered pairs (earlier id first) of one list whose mutual score passes."""
    if len(records) < 2:
        return Candidates.empty()
    ids = _ids(records)
    score = mutual_visibility_score(_visibility(records), _visibility(records))
    i, j = np.triu_indices(len(records), k=1)
    keep = score[i, j] >= 4 * min_visible
    return Candidates(ids[i[keep]], ids[j[keep]])


def _across(first: Sequence[ImageRecord], second: Sequence[ImageRecord], min_visible: int) -> Candidates:
    """Every (image of ``first``, image of ``second``) pair whose mutual score passes."""
    if not first or not second:
        return Candidates.empty()
    score = mutual_visibility_score(_visibility(first), _visibility(second))
    i, j = np.nonzero(score >= 4 * min_visible)
    return Candidates(_ids(first)[i], _ids(second)[j])


@dataclass
class Plan:
    """What the builder decided, before anything is written."""

    splits: dict[str, dict[str, dict[str, list[ImageRecord]]]]  # family -> species -> split -> images
    pairs: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)  # folder -> (src, trg, category)
    per_species: dict[str, dict[str, Any]] = field(default_factory=dict)


def plan_splits(raw: RawAP10K, crowd: set[int], rules: BuildRules) -> Plan:
    """Step 2: per species (sorted), drop crowd images and those with too few keypoints, then split by id."""
    grouped: dict[str, dict[str, list[ImageRecord]]] = defaultdict(lambda: defaultdict(list))
    for image_id in sorted(raw.images):
        record = raw.images[image_id]
        record.crowd = image_id in crowd
        grouped[record.family][record.species].append(record)
    plan = Plan(splits={})
    for family in sorted(grouped):
        plan.splits[family] = {}
        for species in sorted(grouped[family]):
            records = grouped[family][species]
            kept = [r for r in records if not r.crowd and r.num_keypoints >= rules.min_visible_keypoints]
            train, val, test = split_species(kept, rules.test_per_species, rules.val_per_species)
            plan.splits[family][species] = {"trn": train, "val": val, "test": test}
            crowd_count = sum(r.crowd for r in records)
            plan.per_species[species] = {
                "family": family, "annotated": len(records), "crowd": crowd_count,
                "too_few_keypoints": len(records) - crowd_count - len(kept),
                "trn": len(train), "val": len(val), "test": len(test),
            }
    return plan


def plan_pairs(plan: Plan, rules: BuildRules, seed: int) -> None:
    """Steps 3-5: every pair folder's (source id, target id, category) list."""
    min_vis = rules.min_visible_keypoints
    for split in ("trn", "val", "test"):
        pairs: list[tuple[int, int, str]] = []
        for family, species_splits in plan.splits.items():
            for species, splits in species_splits.items():
                records = splits[split]
                limit = rules.train_pairs_per_image * len(records) if split == "trn" else None
                chosen = (_within(records, min_vis)
                          .randomly_directed(seed, (split, species, "direction"))
                          .sample(limit, seed, (split, species, "sample")))
                pairs += [(int(s), int(t), species) for s, t in zip(chosen.src, chosen.trg)]
        plan.pairs[split] = pairs
    for split, limit in rules.cross_species_pairs:
        folder = split + CROSS_SPECIES_SUFFIX
        pairs = []
        for family, species_splits in plan.splits.items():
            if len(species_splits) < 2:
                continue
            candidates = Candidates.empty()
            for first, second in combinations(sorted(species_splits), 2):
                candidates = candidates.concat(
                    _across(species_splits[first][split], species_splits[second][split], min_vis))
            chosen = (candidates.randomly_directed(seed, (folder, family, "direction"))
                      .sample(limit, seed, (folder, family, "sample")))
            pairs += [(int(s), int(t), family) for s, t in zip(chosen.src, chosen.trg)]
        plan.pairs[folder] = pairs
    for split, limit in rules.cross_family_pairs:
        folder = split + CROSS_FAMILY_SUFFIX
        members = {family: [r for species in sorted(by_species) for r in by_species[species][split]]
                   for family, by_species in plan.splits.items()}
        pairs = []
        for first, second in combinations(sorted(members), 2):
            chosen = _across(members[first], members[second], min_vis).sample(limit, seed, (folder, first, second))
            pairs += [(int(s), int(t), CROSS_FAMILY_CATEGORY) for s, t in zip(chosen.src, chosen.trg)]
        plan.pairs[folder] = pairs


def pair_list_sha256(pairs: dict[str, list[tuple[int, int, str]]]) -> str:
    """sha256 of the sorted ``<folder>/<pair stem>`` lines: the identity of a build's pair set."""
    lines = sorted(f"{folder}/{pair_stem(*p)}\n" for folder, items in pairs.items() for p in items)
    return hashlib.sha256("".join(lines).encode()).hexdigest()
