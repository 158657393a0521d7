"""MARCO's released MP-100 pair lists: read from the release zip (or its extracted folder) and installed byte for
byte (``corrbench build-mp100 --official`` / ``--official-zip PATH``), so the paper's pairs are evaluated exactly.

``MP100.prepare`` calls ``install_official_lists`` when no list is installed: installing the release is a
download (checked, then copied), not the curation rebuild of ``build.py``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

from ...errors import DataError
from ...files import file_sha256
from ..download import fetch_source
from .annotations import check_category_names, load_annotations
from .install import write_lists
from .layout import DOMAINS, OFFICIAL_PAIR_LISTS, OFFICIAL_URL, annotation_test_files
from .report import report_lines


def _lists_from_members(members: Mapping[str, bytes], where: str) -> dict[str, bytes]:
    """Pick the five lists out of archive members / files, by base name (layout inside is not relied on)."""
    found: dict[str, list[str]] = {}
    for name in members:
        base = name.rsplit("/", 1)[-1]
        if "__MACOSX" in name or base.startswith("._"):
            continue
        for domain, spec in DOMAINS.items():
            if base == spec.list_file:
                found.setdefault(domain, []).append(name)
    missing = [DOMAINS[d].list_file for d in DOMAINS if d not in found]
    if missing:
        raise DataError(
            f"{where} lacks {', '.join(missing)}",
            hint=f"it should hold MARCO's five lists (pairs_<domain>.json); download it again from {OFFICIAL_URL}",
        )
    doubles = {d: names for d, names in found.items() if len(names) > 1}
    if doubles:
        raise DataError(f"{where} holds more than one copy of {', '.join(DOMAINS[d].list_file for d in doubles)}")
    return {domain: members[found[domain][0]] for domain in DOMAINS}


def read_official_zip(zip_path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()
                       if not info.is_dir() and info.filename.endswith(".json")}  # fmt: skip
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{zip_path}: not a readable zip archive ({exc})",
                        hint=f"download it again from {OFFICIAL_URL}") from None  # fmt: skip
    return _lists_from_members(members, str(zip_path))


def read_official_folder(folder: Path) -> dict[str, bytes]:
    members = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("pairs_*.json"))}
    return _lists_from_members(members, str(folder))


def install_official_lists(
    data_root: Path,
    *,
    zip_path: Path | None = None,
    annotations_root: Path | None = None,
    images_root: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Install MARCO's released lists into ``<data_root>/MP-100/pairs/`` with a manifest (kind "official").

    From ``zip_path`` (a local copy of mp100_pairs.zip) or else from the download seam (``fetch_source``),
    which extracts the zip under ``MP-100/official/``. The lists are installed byte for byte. Statistics need
    the annotations (``annotations_root``, when present); the images check needs ``images_root``.
    """
    data_root = Path(data_root)
    if zip_path is not None:
        lists = read_official_zip(Path(zip_path))
        origin = {"url": OFFICIAL_URL, "archive": Path(zip_path).name,
                  "archive_sha256": file_sha256(zip_path)}  # fmt: skip
    else:
        extracted = data_root / OFFICIAL_PAIR_LISTS.destination
        if not OFFICIAL_PAIR_LISTS.is_present(data_root):
            fetch_source(OFFICIAL_PAIR_LISTS, data_root, progress=progress)
        lists = read_official_folder(extracted)
        downloaded = data_root / ".downloads" / OFFICIAL_PAIR_LISTS.filename
        archive_sha256 = file_sha256(downloaded) if downloaded.is_file() else None
        origin = {"url": OFFICIAL_URL, "archive": OFFICIAL_PAIR_LISTS.filename, "archive_sha256": archive_sha256}
    index = None
    if annotations_root is not None and annotation_test_files(annotations_root):
        index = load_annotations(annotations_root)
        check_category_names(index)
    manifest = write_lists(data_root, "official", lists, index, images_root,
                            {"source": origin,
                             "annotation_files": dict(sorted(index.files.items())) if index else None})  # fmt: skip
    if progress:
        print("\n".join(report_lines(manifest, images_root)))
    return manifest
