"""From Pair records to PairBatches: image loading (optionally in DataLoader workers) and padding."""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .datasets.images import load_image, load_mask
from .types import Pair, PairBatch


class PairImages(Dataset):
    """Loads what a Matcher may see of each pair (never the target keypoints, unless asked for the oracle)."""

    def __init__(self, pairs: Sequence[Pair], *, with_masks: bool = False, with_ground_truth: bool = False):
        self.pairs = list(pairs)
        self.with_masks = with_masks
        self.with_ground_truth = with_ground_truth

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        item: dict[str, Any] = {
            "pair": pair,
            "src_image": load_image(pair.src_image, pair.src_size),
            "trg_image": load_image(pair.trg_image, pair.trg_size),
        }
        if self.with_masks:
            item["src_mask"] = _mask_or_box(pair, "src")
            item["trg_mask"] = _mask_or_box(pair, "trg")
        return item


def _mask_or_box(pair: Pair, side: str) -> torch.Tensor:
    """The object mask, or the filled object box when the dataset ships no masks."""
    path = getattr(pair, f"{side}_mask")
    size = getattr(pair, f"{side}_size")
    if path is not None:
        return load_mask(path, size, pair.meta.get("mask_label"))
    mask = torch.zeros(size[1], size[0], dtype=torch.bool)
    box = getattr(pair, f"{side}_bbox")
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        mask[max(y1, 0) : y2 + 1, max(x1, 0) : x2 + 1] = True
    else:
        mask[:] = True
    return mask


def collate_pairs(items: Sequence[dict[str, Any]], with_ground_truth: bool = False) -> PairBatch:
    """Stack keypoints (padded to the largest count in the batch); images stay a list (sizes differ)."""
    pairs: list[Pair] = [item["pair"] for item in items]
    n = max((p.num_keypoints for p in pairs), default=0)
    src_kps = torch.zeros(len(pairs), n, 2, dtype=torch.float32)
    query_mask = torch.zeros(len(pairs), n, dtype=torch.bool)
    ground_truth = torch.zeros(len(pairs), n, 2, dtype=torch.float32) if with_ground_truth else None
    for b, pair in enumerate(pairs):
        k = pair.num_keypoints
        valid = torch.from_numpy(pair.valid)
        src_kps[b, :k] = torch.from_numpy(pair.src_kps).float().nan_to_num(0.0)
        query_mask[b, :k] = valid
        if ground_truth is not None:
            ground_truth[b, :k] = torch.from_numpy(pair.trg_kps).float().nan_to_num(0.0)
    with_masks = "src_mask" in items[0] if items else False
    return PairBatch(
        src_images=[item["src_image"] for item in items],
        trg_images=[item["trg_image"] for item in items],
        src_kps=src_kps,
        query_mask=query_mask,
        src_sizes=[p.src_size for p in pairs],
        trg_sizes=[p.trg_size for p in pairs],
        pair_ids=[p.pair_id for p in pairs],
        categories=[p.category for p in pairs],
        src_ids=[p.src_id for p in pairs],
        trg_ids=[p.trg_id for p in pairs],
        src_masks=[item["src_mask"] for item in items] if with_masks else None,
        trg_masks=[item["trg_mask"] for item in items] if with_masks else None,
        ground_truth=ground_truth,
        kp_ids=[p.kp_ids for p in pairs],
    )


def batch_loader(
    pairs: Sequence[Pair],
    batch_size: int,
    *,
    workers: int = 0,
    with_masks: bool = False,
    with_ground_truth: bool = False,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of pairs in the given order (no shuffling: the order is part of the run's record)."""
    dataset = PairImages(pairs, with_masks=with_masks, with_ground_truth=with_ground_truth)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=partial(collate_pairs, with_ground_truth=with_ground_truth),
        pin_memory=pin_memory,
    )


def make_batch(pairs: Sequence[Pair], *, with_masks: bool = False, with_ground_truth: bool = False) -> PairBatch:
    """One PairBatch of ``pairs`` loaded in this process (handy in tests and notebooks)."""
    dataset = PairImages(pairs, with_masks=with_masks, with_ground_truth=with_ground_truth)
    return collate_pairs([dataset[i] for i in range(len(dataset))], with_ground_truth)
