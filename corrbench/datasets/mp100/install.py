"""Installing a set of five pair lists (rebuilt or released) into ``pairs/`` with the manifest describing them,
swapped in as one folder so that a reader never sees lists of one kind with the manifest of the other."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from ...errors import DataError
from ...files import replacing_directory
from .annotations import AnnotationIndex
from .layout import (
    DOMAINS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    OFFICIAL_RELEASE_SHA256,
    PairEntry,
    decode_pair_list,
    encode_pair_list,
    pairs_dir,
    parse_entry,
)
from .report import list_statistics, missing_images


def write_lists(
    data_root: Path,
    kind: str,
    lists: Mapping[str, list[PairEntry] | bytes],
    index: AnnotationIndex | None,
    images_root: Path | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """Encode (or keep, for released bytes) the lists, describe them in a manifest, install both at once."""
    files: dict[str, bytes] = {}
    domains: dict[str, Any] = {}
    images_checked = images_root is not None and Path(images_root).is_dir()
    for domain, value in lists.items():
        raw = value if isinstance(value, bytes) else encode_pair_list(value)
        entries = value if not isinstance(value, bytes) else _entries(raw, DOMAINS[domain].list_file, domain)
        files[DOMAINS[domain].list_file] = raw
        digest = hashlib.sha256(raw).hexdigest()
        domains[domain] = {
            "file": DOMAINS[domain].list_file,
            "sha256": digest,
            "matches_marco_release": digest == OFFICIAL_RELEASE_SHA256[domain],
            **list_statistics(domain, entries, index),
            "missing_images": missing_images(entries, images_root) if images_checked else None,
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "created_by": "corrbench build-mp100",
        **extra,
        "images_checked": images_checked,
        "domains": domains,
    }
    files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    with replacing_directory(pairs_dir(data_root)) as staging:  # a reader never sees old and new lists mixed
        for name, raw in files.items():
            (staging / name).write_bytes(raw)
    return manifest


def _entries(raw: bytes, label: str, domain: str) -> list[PairEntry]:
    entries = []
    for position, item in enumerate(decode_pair_list(raw, label)):
        parsed = parse_entry(item, domain)
        if not isinstance(parsed, PairEntry):
            raise DataError(f"{label}: entry {position}: {parsed[0]}: {parsed[1]}",
                            hint="this is not one of MARCO's MP-100 pair lists")  # fmt: skip
        entries.append(parsed)
    return entries
