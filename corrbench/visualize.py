"""Pictures of correspondences: two images side by side, coloured numbered points joined by lines.

Used by ``corrbench match --out vis.png``; optional ground truth draws hollow circles and marks each
prediction green (within the threshold) or red.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ConfigError

_GAP = 16  # pixels between the two images
_MIN_HEIGHT, _MAX_HEIGHT = 360, 520  # both images are scaled to one height in this range, for readability


def _palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated, saturated colours (golden-ratio hue steps)."""
    return [
        tuple(int(255 * c) for c in colorsys.hsv_to_rgb((0.07 + i * 0.618034) % 1.0, 0.85, 1.0))  # type: ignore[misc]
        for i in range(n)
    ]


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def draw_correspondences(
    src: Image.Image,
    trg: Image.Image,
    src_points: np.ndarray,
    trg_points: np.ndarray,
    *,
    trg_truth: np.ndarray | None = None,
    correct: Sequence[bool] | None = None,
    title: str = "",
) -> Image.Image:
    """A side-by-side picture of ``(N, 2)`` source points and their predicted target points (pixels)."""
    src, trg = src.convert("RGB"), trg.convert("RGB")
    height = min(_MAX_HEIGHT, max(_MIN_HEIGHT, src.height, trg.height))
    scales = [height / src.height, height / trg.height]
    left = src.resize((max(1, round(src.width * scales[0])), height), Image.Resampling.LANCZOS)
    right = trg.resize((max(1, round(trg.width * scales[1])), height), Image.Resampling.LANCZOS)
    header = 26 if title else 0
    canvas = Image.new("RGB", (left.width + _GAP + right.width, height + header), (24, 24, 24))
    canvas.paste(left, (0, header))
    canvas.paste(right, (left.width + _GAP, header))
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    if title:
        draw.text((8, 5), title, fill=(235, 235, 235), font=font)

    def to_canvas(point, side: int) -> tuple[float, float]:
        # pixel-centre convention: scaling maps the pixel edges (-0.5) onto each other
        x0 = 0 if side == 0 else left.width + _GAP
        return x0 + (point[0] + 0.5) * scales[side] - 0.5, header + (point[1] + 0.5) * scales[side] - 0.5

    radius = max(3, height // 90)
    colours = _palette(len(src_points))
    for i, (ps, pt, colour) in enumerate(zip(src_points, trg_points, colours)):
        a, b = to_canvas(ps, 0), to_canvas(pt, 1)
        draw.line([a, b], fill=colour, width=2)
        if trg_truth is not None and np.isfinite(trg_truth[i]).all():
            t = to_canvas(trg_truth[i], 1)
            draw.ellipse([t[0] - radius - 2, t[1] - radius - 2, t[0] + radius + 2, t[1] + radius + 2],
                         outline=colour, width=2)
        outline = (255, 255, 255)
        if correct is not None:
            outline = (40, 220, 90) if correct[i] else (240, 50, 50)
        for x, y in (a, b):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=outline, width=2)
        for x, y in (a, b):
            draw.text((x + radius + 2, y - radius - 12), str(i), fill=colour, font=font,
                      stroke_width=2, stroke_fill=(0, 0, 0))
    return canvas


def check_picture_path(path: Path, option: str = "--out") -> None:
    """Refuse, before any work is done, a file name whose extension no image writer of PIL knows (``x.txt``)."""
    suffix = Path(path).suffix.lower()
    formats = Image.registered_extensions()
    if formats.get(suffix) not in Image.SAVE:
        kind = f"a {suffix!r} file" if suffix else "a file without an extension"
        raise ConfigError(f"{option} {path}: cannot write a picture as {kind}",
                          hint=f"give a picture file name, e.g. {option} {Path(path).with_suffix('.png').name}")


def save_correspondences(path: Path, *args, **kwargs) -> Path:
    path = Path(path)
    check_picture_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_correspondences(*args, **kwargs).save(path)
    return path
