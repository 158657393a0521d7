"""A small reader for the OpenEXR files monocular depth models write (MoGe's ``points.exr`` / ``depth.exr``).

MoGe saves its maps with OpenCV (``cv2.imwrite`` with ``IMWRITE_EXR_TYPE_FLOAT``): single-part scanline files,
float channels, ZIP compression (blocks of 16 lines; a block that would not shrink is stored raw). This module
reads that subset (plus uncompressed, ZIPS and half-float files) with numpy and zlib, so corrbench does not need
the OpenEXR or OpenCV wheels for training. Tiled, deep, multi-part files and the other compressions (RLE, PIZ,
PXR24, B44, DWA) are refused with a message naming the file: re-save such maps uncompressed or as ``.npy``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from corrbench.errors import DataError

_MAGIC = 20000630
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}  # UINT, HALF, FLOAT
_LINES_PER_BLOCK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP
_COMPRESSION_NAMES = {0: "NONE", 1: "RLE", 2: "ZIPS", 3: "ZIP", 4: "PIZ", 5: "PXR24", 6: "B44", 7: "B44A",
                      8: "DWAA", 9: "DWAB"}
_NOT_SINGLE_PART_SCANLINE = 0x200 | 0x800 | 0x1000  # tiled, deep, multi-part flags of the version field


def read_exr_channels(path: Path | str) -> tuple[np.ndarray, list[str]]:
    """(H, W, C) float32 array and the channel names, channels in alphabetical name order.

    Alphabetical order is the order the file stores them in, and the order Jamais Vu's ``read_exr`` stacks
    them in (it sorts the names). For a MoGe ``points.exr`` (written by OpenCV as R=x, G=y, B=z) that is
    (B, G, R) = (z, y, x); see ``point_maps.read_point_map``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the EXR file ({exc.strerror})") from exc
    try:
        return _decode(data, path)
    except (struct.error, IndexError, ValueError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable OpenEXR file ({exc})",
                        hint="re-export the map, or write it as .npy beside it") from exc


def _decode(data: bytes, path: Path) -> tuple[np.ndarray, list[str]]:
    magic, version = struct.unpack_from("<ii", data, 0)
    if magic != _MAGIC:
        raise DataError(f"{path}: not an OpenEXR file (magic number {magic})")
    if version & _NOT_SINGLE_PART_SCANLINE:
        raise DataError(f"{path}: tiled, deep or multi-part EXR files are not supported",
                        hint="save the map as a single-part scanline EXR (as MoGe/OpenCV do) or as .npy")
    header, offset = _read_header(data, 8, path)
    for needed in ("channels", "compression", "dataWindow"):
        if needed not in header:
            raise DataError(f"{path}: EXR header has no '{needed}' attribute")
    channels = header["channels"]
    compression = header["compression"]
    if compression not in _LINES_PER_BLOCK:
        raise DataError(f"{path}: EXR compression {_COMPRESSION_NAMES.get(compression, compression)} is not "
                        f"supported (NONE, ZIPS and ZIP are)",
                        hint="re-save the map with ZIP compression (OpenCV's default) or as .npy")
    if any(sampling != (1, 1) for _, _, sampling in channels):
        raise DataError(f"{path}: subsampled EXR channels are not supported")
    x_min, y_min, x_max, y_max = header["dataWindow"]
    width, height = x_max - x_min + 1, y_max - y_min + 1
    lines = _LINES_PER_BLOCK[compression]
    n_blocks = -(-height // lines)
    block_offsets = struct.unpack_from(f"<{n_blocks}Q", data, offset)
    line_bytes = sum(dtype.itemsize for _, dtype, _ in channels) * width
    planes = {name: np.empty((height, width), dtype=np.float32) for name, _, _ in channels}
    for block_offset in block_offsets:
        y, size = struct.unpack_from("<ii", data, block_offset)
        row = y - y_min
        n_lines = min(lines, height - row)
        raw = data[block_offset + 8: block_offset + 8 + size]
        expected = n_lines * line_bytes
        # a block that would not shrink is stored as it is (OpenEXR's rule for every compression)
        pixels = raw if compression == 0 or size >= expected else _unzip(raw, expected)
        if len(pixels) != expected:
            raise DataError(f"{path}: EXR block at line {y} holds {len(pixels)} bytes, expected {expected}")
        position = 0
        for line in range(n_lines):
            for name, dtype, _ in channels:
                count = width * dtype.itemsize
                planes[name][row + line] = np.frombuffer(pixels, dtype=dtype, count=width, offset=position)
                position += count
    names = sorted(planes)
    return np.stack([planes[name] for name in names], axis=-1), names


def _unzip(raw: bytes, expected: int) -> bytes:
    """Undo OpenEXR's ZIP filter: zlib, then the byte-delta predictor, then the even/odd byte split."""
    deltas = np.frombuffer(zlib.decompress(raw), dtype=np.uint8)
    if deltas.size != expected:
        raise ValueError(f"a ZIP block inflates to {deltas.size} bytes, expected {expected}")
    steps = deltas.astype(np.int64)
    steps[1:] -= 128
    split = (np.cumsum(steps) % 256).astype(np.uint8)
    out = np.empty_like(split)
    half = (split.size + 1) // 2
    out[0::2], out[1::2] = split[:half], split[half:]
    return out.tobytes()


def _read_header(data: bytes, offset: int, path: Path) -> tuple[dict, int]:
    header: dict = {}
    while data[offset] != 0:
        name, offset = _cstring(data, offset)
        kind, offset = _cstring(data, offset)
        (size,) = struct.unpack_from("<i", data, offset)
        offset += 4
        value = data[offset: offset + size]
        offset += size
        if name == "channels":
            header[name] = _channel_list(value, path)
        elif name == "compression":
            header[name] = value[0]
        elif name == "dataWindow":
            header[name] = struct.unpack("<4i", value)
    return header, offset + 1


def _channel_list(value: bytes, path: Path) -> list[tuple[str, np.dtype, tuple[int, int]]]:
    channels = []
    offset = 0
    while value[offset] != 0:
        name, offset = _cstring(value, offset)
        pixel_type, _, x_sampling, y_sampling = struct.unpack_from("<iB3xii", value, offset)
        offset += 16
        if pixel_type not in _PIXEL_DTYPES:
            raise DataError(f"{path}: EXR channel '{name}' has unknown pixel type {pixel_type}")
        channels.append((name, _PIXEL_DTYPES[pixel_type], (x_sampling, y_sampling)))
    # OpenEXR stores channels in alphabetical order; the block layout relies on it
    return sorted(channels, key=lambda c: c[0])


def _cstring(data: bytes, offset: int) -> tuple[str, int]:
    end = data.index(b"\0", offset)
    return data[offset:end].decode("latin-1"), end + 1
