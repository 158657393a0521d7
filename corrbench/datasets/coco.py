"""Reading a COCO keypoint file (AP-10K's and MP-100's annotations share the format): one home for the checks
that the file is JSON and holds the three lists every later step indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import UnreadableJSON, decode_json

COCO_LISTS = ("images", "annotations", "categories")


def read_coco(path: Path, raw: bytes, *, hint: str) -> dict[str, Any]:
    """The COCO object in ``raw`` (the bytes of ``path``, which error messages name); ``hint`` says how to get a
    good copy of this dataset's file."""
    try:
        data = decode_json(raw, path)
    except UnreadableJSON as exc:
        raise DataError(f"{path}: not valid JSON ({exc})", hint=hint) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level must be a COCO object with {', '.join(COCO_LISTS)}", hint=hint)
    for key in COCO_LISTS:
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: field {key!r} is missing or not a list", hint=hint)
    return data
