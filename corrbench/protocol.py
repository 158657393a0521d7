"""Benchmarks as versioned specs, and the measuring frame PCK is computed in.

Every choice that moves a number lives in a ``BenchmarkSpec`` (and its ``Protocol``) and is copied into
every result. Changing any of them for an existing benchmark means bumping its ``version``.

Frames (``Protocol.frame``), where predictions and ground truth are compared:

``original``                       the original target image (corrbench's default; uniform, comparable)
``square:<S>``                     MARCO's evaluation frame: both images stretched to ``S x S``; keypoints and
                                   boxes scaled per axis by ``S/W``, ``S/H`` (``x' = x * S / W``) and ground-truth
                                   keypoints clamped to ``[1e-4, S - 1 - 1e-4]``; ``img`` threshold = ``S``
``square-align-corners:<S>``       the unified benchmark's: stretched square, ``x' = x * (S-1)/(W-1)``
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import ConfigError
from .metrics import ALPHAS, COMPARISONS, THRESHOLD_MODES, PairScore, pck_threshold, score_pair
from .types import Pair, Size

PCK_BY = ("image", "point")
AVERAGES = ("all", "category")
_SQUARE_CLAMP_EPS = 1e-4  # MARCO's datasets/dataset.py regularise_coordinates(eps=1e-4)
_FRAME_RE = re.compile(r"^(original|square|square-align-corners)(?::(\d+))?$")


@dataclass(frozen=True)
class Frame:
    """A parsed ``Protocol.frame``: maps target-image points, boxes and sizes into the measuring frame."""

    kind: str
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> "Frame":
        match = _FRAME_RE.match(text)
        if not match or (match.group(1) == "original") != (match.group(2) is None):
            raise ConfigError(
                f"malformed frame {text!r}",
                hint="use 'original', 'square:<size>' or 'square-align-corners:<size>' (e.g. square:840)",
            )
        return cls(match.group(1), int(match.group(2) or 0))

    def _scale(self, image_size: Size) -> tuple[np.ndarray, np.ndarray]:
        w, h = image_size
        s = self.size
        if self.kind == "square":
            return np.array([s / w, s / h]), np.zeros(2)
        return np.array([(s - 1) / max(w - 1, 1), (s - 1) / max(h - 1, 1)]), np.zeros(2)

    def points(self, points: np.ndarray, image_size: Size, *, ground_truth: bool = False) -> np.ndarray:
        if self.kind == "original":
            return np.asarray(points, dtype=np.float64)
        a, b = self._scale(image_size)
        out = np.asarray(points, dtype=np.float64) * a + b
        if ground_truth and self.kind == "square":
            out = np.clip(out, _SQUARE_CLAMP_EPS, self.size - 1 - _SQUARE_CLAMP_EPS)
        return out

    def bbox(self, bbox: np.ndarray | None, image_size: Size) -> np.ndarray | None:
        if bbox is None or self.kind == "original":
            return bbox
        a, b = self._scale(image_size)
        return np.asarray(bbox, dtype=np.float64) * np.tile(a, 2) + np.tile(b, 2)

    def image_size(self, image_size: Size) -> Size:
        return image_size if self.kind == "original" else (self.size, self.size)


@dataclass(frozen=True)
class Protocol:
    """How predictions are scored.

    threshold: ``bbox`` (max side of the target object box), ``img`` (max side of the target image) or
        ``bbox-kp`` (max side of the box spanned by the visible target keypoints).
    alphas: PCK thresholds; all of 0.01 ... 0.2 are always computed, tables choose.
    comparison: ``<=`` (hpf, DIFT, unified benchmark, MARCO) or ``<`` (GeoAware-SC, Jamais Vu).
    frame: see the module docstring.
    pck_by / average: the default aggregation tables show (every aggregation is always stored).
    """

    threshold: str = "bbox"
    alphas: tuple[float, ...] = ALPHAS
    comparison: str = "<="
    frame: str = "original"
    pck_by: str = "image"
    average: str = "all"

    def __post_init__(self) -> None:
        checks = (
            ("threshold", self.threshold, THRESHOLD_MODES),
            ("comparison", self.comparison, COMPARISONS),
            ("pck_by", self.pck_by, PCK_BY),
            ("average", self.average, AVERAGES),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"protocol {name} {value!r} is not one of {', '.join(allowed)}")
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        Frame.parse(self.frame)

    @property
    def measuring_frame(self) -> Frame:
        return Frame.parse(self.frame)

    def score(self, pair: Pair, pred: np.ndarray) -> PairScore:
        """Score predictions (original target-image pixels) for one pair under this protocol."""
        frame = self.measuring_frame
        size = pair.trg_size
        gt = frame.points(pair.trg_kps, size, ground_truth=True)
        threshold = pck_threshold(
            self.threshold,
            trg_bbox=frame.bbox(pair.trg_bbox, size),
            trg_size=frame.image_size(size),
            trg_kps=gt,
            trg_visible=pair.trg_visible,
        )
        return score_pair(
            pair.pair_id,
            pair.category,
            pred=frame.points(pred, size),
            trg_kps=gt,
            src_visible=pair.src_visible,
            trg_visible=pair.trg_visible,
            threshold=threshold,
            alphas=self.alphas,
            comparison=self.comparison,
        )


@dataclass(frozen=True)
class BenchmarkSpec:
    """A named, versioned evaluation: which pairs, read how, scored how.

    name, version: bump ``version`` whenever a change could move a number.
    dataset: the adapter that reads the data (a key of ``corrbench.datasets.ADAPTERS``).
    data_dir: the dataset's folder under the data root.
    split / subset: which pairs (``subset`` is an adapter-defined restriction, or None for all).
    adapter_options: adapter settings that decide the pairs (annotation folders, visibility rule, ...).
    protocol: the scoring protocol.
    source: where the benchmark comes from (paper / release).
    """

    name: str
    version: int
    description: str
    dataset: str
    data_dir: str
    split: str
    protocol: Protocol = field(default_factory=Protocol)
    subset: str | None = None
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["adapter_options"] = dict(self.adapter_options)
        data["protocol"]["alphas"] = list(self.protocol.alphas)
        return data

    @property
    def key(self) -> str:
        """The identity of the pair set and protocol, as tables group runs: ``name@vVERSION``."""
        return f"{self.name}@v{self.version}"
