#!/usr/bin/env python3
"""How often MARCO's MP-100 loader scores a keypoint against a keypoint of another type.

This measures the figures quoted in ``benchmarks/marco_frame.py`` and the README (Data) for
``mp100-animal-body-marco``. MARCO's loader (visinf/MARCO ``datasets/mp100.py``) indexes every annotation of the
``*test*.json`` files by image (those with ``num_keypoints > 0``, of any category), concatenates per image the
visible (v > 0) keypoints of all its annotations in file order, cuts both lists to the shorter one and scores
row i of the source against row i of the target. A row counts as mismatched here when its two entries are
different keypoint types (different indices within the category): a lower bound on wrong rows, since two
entries of one type on different animals of a multi-animal image count as matched. corrbench pairs keypoints by
index on one annotation per image instead (``corrbench.datasets.mp100.adapter``).

Usage (MP-100's test annotations and MARCO's released pair lists, ``pairs_*.json``):

    python tools/marco_mp100_rows.py MP-100/annotations MP-100/pairs
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

KeypointType = tuple[int, int]  # (annotation id, keypoint index)


def annotations_by_file(annotations_dir: Path) -> dict[str, list[dict]]:
    """Every keypoint annotation of the test files, grouped by image file name, in file order."""
    images: dict[int, dict] = {}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for path in sorted(annotations_dir.glob("*test*.json")):
        coco = json.loads(path.read_text())
        images.update({image["id"]: image for image in coco["images"]})
        for ann in coco["annotations"]:
            if ann.get("keypoints") and ann.get("num_keypoints", 0) > 0:
                by_image[ann["image_id"]].append(ann)
    return {images[i]["file_name"]: anns for i, anns in by_image.items() if i in images}


def visible_rows(annotations: list[dict]) -> list[KeypointType]:
    """The visible keypoints of an image as MARCO's loader lists them: all annotations, concatenated."""
    rows = []
    for ann in annotations:
        kps = ann["keypoints"]
        rows += [(ann["id"], k) for k in range(len(kps) // 3) if kps[3 * k + 2] > 0]
    return rows


def count_list(entries: list[dict], by_file: dict[str, list[dict]]) -> dict[str, int]:
    counts = {"pairs": len(entries), "pairs_mismatched": 0, "rows": 0, "rows_mismatched": 0, "pairs_multi": 0}
    for entry in entries:
        src_anns, trg_anns = by_file.get(entry["src_file"], []), by_file.get(entry["trg_file"], [])
        src, trg = visible_rows(src_anns), visible_rows(trg_anns)
        n = min(len(src), len(trg))
        wrong = sum(src[i][1] != trg[i][1] for i in range(n))
        counts["rows"] += n
        counts["rows_mismatched"] += wrong
        counts["pairs_mismatched"] += wrong > 0
        counts["pairs_multi"] += len(src_anns) > 1 or len(trg_anns) > 1
    return counts


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", type=Path, help="folder with MP-100's mp100_split*_test.json")
    parser.add_argument("pair_lists", type=Path, help="folder with MARCO's released pairs_*.json")
    args = parser.parse_args(argv)
    by_file = annotations_by_file(args.annotations)
    if not by_file:
        parser.error(f"no keypoint annotations in {args.annotations}/*test*.json")
    table = {}
    print(f"{'list':32s} {'pairs':>6s} {'pairs mismatched':>17s} {'rows scored':>12s} {'rows mismatched':>16s} "
          f"{'pairs w/ multi-annotation image':>32s}")
    for path in sorted(args.pair_lists.glob("pairs_*.json")):
        counts = table[path.name] = count_list(json.loads(path.read_text()), by_file)
        print(f"{path.name:32s} {counts['pairs']:6d} {counts['pairs_mismatched']:17d} {counts['rows']:12d} "
              f"{counts['rows_mismatched']:16d} {counts['pairs_multi']:32d}")
    return table


if __name__ == "__main__":
    main()
