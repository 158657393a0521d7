"""Matching points between any two of your own images with any registered method (``corrbench match``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .batching import collate_pairs
from .datasets.images import load_image
from .errors import ConfigError
from .files import UnreadableJSON, read_json
from .runtime import seed_everything
from .matcher import Matcher
from .registry import METHODS
from .types import Pair


def parse_points(text: str) -> np.ndarray:
    """``"x,y x,y ..."`` -> ``(N, 2)`` float array."""
    points = []
    for token in text.replace(";", " ").split():
        parts = token.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            points.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise ConfigError(f"malformed point {token!r}", hint='write points as "x,y x,y", e.g. "120,45 80,200"') from None
    if not points:
        raise ConfigError("no points given", hint='pass --points "x,y x,y" or --points-file pts.json')
    return np.asarray(points, dtype=np.float64)


def read_points_file(path: Path) -> np.ndarray:
    """A JSON file holding ``[[x, y], ...]`` or ``{"points": [[x, y], ...]}``."""
    try:
        data = read_json(path)
    except UnreadableJSON as exc:
        raise ConfigError(f"cannot read points file {path}: {exc}") from None
    if isinstance(data, dict):
        data = data.get("points")
    try:
        points = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        points = np.empty(0)
    if points.ndim != 2 or points.shape[1:] != (2,) or len(points) == 0:
        raise ConfigError(f"{path}: field 'points' must be a non-empty list of [x, y]",
                          hint='e.g. {"points": [[120, 45], [80, 200]]}')
    return points


def build_matcher(method: str, options: Mapping[str, Any], device: torch.device, seed: int = 0) -> Matcher:
    seed_everything(seed)
    return METHODS.get(method)(**options).to(device).eval()


def match_points(matcher: Matcher, src_path: Path, trg_path: Path, points: np.ndarray) -> np.ndarray:
    """Predicted ``(N, 2)`` target points for ``points`` of the source image (original pixels)."""
    src = load_image(Path(src_path))
    trg = load_image(Path(trg_path))
    src_size = (int(src.shape[2]), int(src.shape[1]))
    trg_size = (int(trg.shape[2]), int(trg.shape[1]))
    outside = (points < -0.5).any(axis=1) | (points[:, 0] > src_size[0] - 0.5) | (points[:, 1] > src_size[1] - 0.5)
    if outside.any():
        raise ConfigError(f"point(s) {points[outside].tolist()} lie outside the source image of size {src_size}",
                          hint="points are (x, y) pixels of the source image")
    n = len(points)
    # No target annotation exists: the pair carries placeholders that the Matcher never sees.
    pair = Pair("query", "query", src_path, trg_path, src_size, trg_size, points, np.zeros((n, 2)),
                np.ones(n, bool), np.ones(n, bool))
    batch = collate_pairs([{"pair": pair, "src_image": src, "trg_image": trg}])
    output = matcher.predict(batch.to(matcher.device))
    return output.points[0].float().cpu().numpy().astype(np.float64)
