"""What an installed pairs/ folder holds, for its manifest and the build commands' report: statistics per list,
and which listed images are missing (with where their folder comes from)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from .annotations import AnnotationIndex
from .layout import CATEGORIES, CATEGORY_BY_ID, DOMAINS, IMAGE_SOURCES, OFFICIAL_RELEASE_SHA256, PairEntry


def list_statistics(domain: str, entries: list[PairEntry], index: AnnotationIndex | None) -> dict[str, Any]:
    """Categories, images, pairs and keypoints per pair (visible in both, matched by index) of one list."""
    names = {c.id: c.name for c in CATEGORIES}
    per_category: dict[str, int] = {}
    for entry in entries:
        name = names[entry.category_id]
        per_category[name] = per_category.get(name, 0) + 1
    shared: list[int] = []
    unresolved = 0
    for entry in entries if index is not None else ():
        src = index.instance(entry.src_file, entry.category_id)
        trg = index.instance(entry.trg_file, entry.category_id)
        if src is None or trg is None or len(src.visible) != len(trg.visible):
            unresolved += 1
            continue
        shared.append((src.visible_mask & trg.visible_mask).bit_count())
    keypoints = None
    if shared:
        keypoints = {"mean": round(sum(shared) / len(shared), 2), "min": min(shared), "max": max(shared)}
    return {
        "benchmark": DOMAINS[domain].benchmark,
        "categories": len(per_category),
        "images": len({e.src_file for e in entries} | {e.trg_file for e in entries}),
        "pairs": len(entries),
        "pairs_per_category": dict(sorted(per_category.items())),
        "keypoints_per_pair": keypoints,
        "pairs_without_annotation": unresolved if index is not None else None,
    }


def missing_images(entries: Iterable[PairEntry], images_root: Path | None) -> dict[str, Any]:
    """Which listed images are absent under ``images_root``, by folder, with where each folder comes from."""
    folders: dict[str, dict[str, Any]] = {}
    pairs_missing = 0
    checked: dict[str, bool] = {}
    for entry in entries:
        absent = False
        for rel in (entry.src_file, entry.trg_file):
            if rel not in checked:
                checked[rel] = images_root is not None and (Path(images_root) / rel).is_file()
                folder = rel.split("/", 1)[0]
                info = folders.setdefault(folder, {"listed": 0, "missing": 0, "example": None,
                                                   "category_id": entry.category_id})  # fmt: skip
                info["listed"] += 1
                if not checked[rel]:
                    info["missing"] += 1
                    info["example"] = info["example"] or rel
            absent = absent or not checked[rel]
        pairs_missing += absent
    missing = {}
    for folder, info in sorted(folders.items()):
        if info["missing"]:
            category = CATEGORY_BY_ID.get(info["category_id"])
            present = images_root is not None and (Path(images_root) / folder).is_dir()
            missing[folder] = {
                "listed_images": info["listed"],
                "missing_images": info["missing"],
                "folder_present": present,
                "example": info["example"],
                "source": category.source if category else None,
            }
    return {"pairs_with_missing_images": pairs_missing, "folders": missing}


def describe_missing(report: Mapping[str, Any], images_root: Path | None) -> list[str]:
    """One line per incomplete folder: what is missing, where, and where it comes from."""
    lines = []
    for folder, info in report["folders"].items():
        where = Path(images_root) / folder if images_root is not None else Path("<images>") / folder
        if info["folder_present"]:
            what = (f"{info['missing_images']} of {info['listed_images']} listed images missing in {where} "
                    f"(e.g. {info['example']})")  # fmt: skip
        else:
            what = f"missing folder {where} ({info['listed_images']} listed images)"
        lines.append(f"{what}; from {IMAGE_SOURCES.get(info['source'], 'an unknown source')}")
    return lines


def print_problems(index: AnnotationIndex, limit: int = 10) -> None:
    problems = [f"{where}: {what}" for where, items in sorted(index.problems.items()) for what in items]
    if problems:
        print(f"{len(problems)} malformed annotation entries were left out, e.g.:")
        for line in problems[:limit]:
            print(f"  {line}")


def statistics_table(manifest: Mapping[str, Any]) -> str:
    from tabulate import tabulate

    rows = []
    for domain, info in manifest["domains"].items():
        kps = info.get("keypoints_per_pair") or {}
        rows.append([
            info["benchmark"], info["file"], info["categories"], info["images"], info["pairs"],
            kps.get("mean", "-"), kps.get("min", "-"), kps.get("max", "-"),
            info["missing_images"]["pairs_with_missing_images"] if info["missing_images"] else "-",
        ])  # fmt: skip
    headers = ["benchmark", "list", "categories", "images", "pairs", "kps/pair mean", "min", "max",
               "pairs missing images"]  # fmt: skip
    return tabulate(rows, headers=headers, tablefmt="github")


def report_lines(manifest: Mapping[str, Any], images_root: Path | None) -> list[str]:
    lines = [f"MP-100 pair lists ({manifest['kind']}):", statistics_table(manifest)]
    for domain, info in manifest["domains"].items():
        expected = OFFICIAL_RELEASE_SHA256[domain]
        if manifest["kind"] == "official" and not info["matches_marco_release"]:
            lines.append(f"warning: {info['file']} differs from MARCO's release (sha256 {info['sha256']}, "
                         f"released {expected}): results will not match the paper's pairs")  # fmt: skip
        if info["pairs"] < manifest.get("pairs_per_domain", info["pairs"]):
            lines.append(f"warning: {info['file']} has only {info['pairs']} pairs: too few eligible pairs")
    if not manifest.get("images_checked"):
        lines.append(f"images not checked: no image folder at {images_root}")
    else:
        missing = [line for info in manifest["domains"].values()
                   for line in describe_missing(info["missing_images"], images_root)]  # fmt: skip
        if missing:
            lines.append("missing images (their pairs will be reported as skipped when evaluating):")
            lines += [f"  {line}" for line in dict.fromkeys(missing)]
    return lines
