"""Benchmarks as versioned specs, and the measuring frame PCK is computed in.

Every choice that moves a number lives in a ``BenchmarkSpec`` (and its ``Protocol``) and is copied into
every result. Changing any of them for an existing benchmark means bumping its ``version``. Named sets of
protocol choices (the reference codebases' conventions) are in ``corrbench.protocols``.

Frames (``Protocol.frame``), where predictions and ground truth are compared:

``original``                       the original target image (corrbench's default; uniform, comparable)
``square:<S>``                     MARCO's evaluation frame: both images stretched to ``S x S``; keypoints and
                                   boxes scaled per axis by ``S/W``, ``S/H`` (``x' = x * S / W``) and ground-truth
                                   keypoints clamped to ``[1e-4, S - 1 - 1e-4]``; ``img`` threshold = ``S``
``square-align-corners:<S>``       the unified benchmark's: stretched square, ``x' = x / (W-1) * (S-1)``, ground
                                   truth clamped to ``[1e-4, S - 1 - 1e-4]`` (its ``regularize_coordinates``)
``letterbox:<S>``                  GeoAware-SC's and Jamais Vu's: longest side scaled to ``S`` (``s = S / max(W, H)``),
                                   the short side centred with an integer offset (``int((S - round(S * h / w)) / 2)``);
                                   box thresholds are the original box side times ``s``, ``img`` threshold = ``S``
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from .errors import ConfigError
from .metrics import (
    ALPHAS,
    ARITHMETICS,
    COMPARISONS,
    DAGGER_CANDIDATES,
    THRESHOLD_MODES,
    PairScore,
    pck_threshold,
    score_pair,
)

if TYPE_CHECKING:  # annotations only: corrbench.types imports torch, and `corrbench table` / `ls` start without it
    from .geometry import Size
    from .types import Pair

PCK_BY = ("image", "point")
AVERAGES = ("all", "category")
DEFAULT_PROTOCOL_NAME = "corrbench"
#: Keypoints brought onto a canvas stay this far inside it: MARCO's regularise_coordinates(eps=1e-4), and the
#: unified benchmark's likewise. Scoring frames clamp ground truth with it, the training pipeline its keypoints.
CLAMP_EPS = 1e-4


def clamp_inside(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """``points (N, 2)`` clipped per axis to ``[CLAMP_EPS, W - 1 - CLAMP_EPS]`` (a new array, same dtype)."""
    out = np.array(points, copy=True)
    out[:, 0] = np.clip(out[:, 0], CLAMP_EPS, width - 1 - CLAMP_EPS)
    out[:, 1] = np.clip(out[:, 1], CLAMP_EPS, height - 1 - CLAMP_EPS)
    return out
_FRAME_RE = re.compile(r"^(original|square|square-align-corners|letterbox)(?::(\d+))?$")


@dataclass(frozen=True)
class Frame:
    """A parsed ``Protocol.frame``: maps target-image points, boxes and sizes into the measuring frame."""

    kind: str
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> "Frame":
        match = _FRAME_RE.match(text)
        if not match or (match.group(1) == "original") != (match.group(2) is None) or int(match.group(2) or 1) == 0:
            raise ConfigError(
                f"malformed frame {text!r}",
                hint="use 'original', 'square:<size>', 'square-align-corners:<size>' or 'letterbox:<size>' "
                "(e.g. square:840)",
            )
        return cls(match.group(1), int(match.group(2) or 0))

    def _letterbox(self, image_size: Size) -> tuple[float, np.ndarray]:
        """GeoAware-SC's ``preprocess_kps_pad``: the uniform scale and the (x, y) offset of the padding."""
        w, h = image_size
        s = self.size
        offset = np.zeros(2)
        if h < w:
            offset[1] = int((s - int(np.around(s * h / w))) / 2)
        elif w < h:
            offset[0] = int((s - int(np.around(s * w / h))) / 2)
        return s / max(w, h), offset

    def points(
        self, points: np.ndarray, image_size: Size, *, ground_truth: bool = False, dtype: type = np.float64
    ) -> np.ndarray:
        """Points in the frame, computed in ``dtype`` (float32 reproduces float32 codes' rounding)."""
        out = np.array(points, dtype=dtype)
        if self.kind == "original":
            return out
        w, h = image_size
        s = self.size
        if self.kind == "letterbox":
            scale, offset = self._letterbox(image_size)
            out *= dtype(scale)  # as torch's `kps *= scale`: the scale rounded to the points' dtype first
            out += offset.astype(dtype)
            return out
        if self.kind == "square":
            out *= np.array([s / w, s / h], dtype=dtype)
        else:  # square-align-corners, in the unified benchmark's order of operations
            out = out / np.array([max(w - 1, 1), max(h - 1, 1)], dtype=dtype) * dtype(s - 1)
        if ground_truth:
            out = clamp_inside(out, s, s).astype(dtype)
        return out

    def threshold(self, mode: str, pair: Pair) -> float:
        """The PCK reference length ``T`` of ``pair`` in this frame.

        ``bbox-kp`` spans the target keypoints mapped into the frame before clamping (the unified benchmark
        scales its keypoint box like a point and never clamps it)."""
        if self.kind == "letterbox":
            if mode == "img":
                return float(self.size)  # GeoAware-SC: `alpha * args.ANNO_SIZE`
            # GeoAware-SC: the original box side times the scale (`max(w, h) * trg_scale`), not a side of the
            # scaled box, which rounds differently
            original = pck_threshold(mode, trg_bbox=pair.trg_bbox, trg_size=pair.trg_size, trg_kps=pair.trg_kps,
                                     trg_visible=pair.trg_visible)
            return original * self._letterbox(pair.trg_size)[0]
        return pck_threshold(
            mode,
            trg_bbox=self.bbox(pair.trg_bbox, pair.trg_size),
            trg_size=self.image_size(pair.trg_size),
            trg_kps=self.points(pair.trg_kps, pair.trg_size),
            trg_visible=pair.trg_visible,
        )

    def bbox(self, bbox: np.ndarray | None, image_size: Size) -> np.ndarray | None:
        """A target box ``[x1, y1, x2, y2]`` in the frame (corners mapped like points, never clamped)."""
        if bbox is None or self.kind == "original":
            return bbox
        corners = np.asarray(bbox, dtype=np.float64).reshape(2, 2)
        return self.points(corners, image_size).reshape(4)

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
    arithmetic: ``float64`` or ``torch-float32`` (GeoAware-SC's and Jamais Vu's float32 alphas and
        distances; decides a distance exactly at ``alpha * T``; see ``corrbench.metrics``).
    dagger_candidates: which target keypoints compete in PCK-dagger's nearest-keypoint test:
        ``target-visible`` (corrbench) or ``both-visible`` (Jamais Vu).
    name: the named protocol (``corrbench.protocols``) these settings come from; recorded in results.
    """

    threshold: str = "bbox"
    alphas: tuple[float, ...] = ALPHAS
    comparison: str = "<="
    frame: str = "original"
    pck_by: str = "image"
    average: str = "all"
    arithmetic: str = "float64"
    dagger_candidates: str = "target-visible"
    name: str = DEFAULT_PROTOCOL_NAME

    def __post_init__(self) -> None:
        checks = (
            ("threshold", self.threshold, THRESHOLD_MODES),
            ("comparison", self.comparison, COMPARISONS),
            ("pck_by", self.pck_by, PCK_BY),
            ("average", self.average, AVERAGES),
            ("arithmetic", self.arithmetic, ARITHMETICS),
            ("dagger_candidates", self.dagger_candidates, DAGGER_CANDIDATES),
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
        # float32 codes map their keypoints into the frame in float32; doing the same keeps their rounding
        dtype = np.float32 if self.arithmetic == "torch-float32" else np.float64
        gt = frame.points(pair.trg_kps, size, ground_truth=True, dtype=dtype)
        return score_pair(
            pair.pair_id,
            pair.category,
            pred=frame.points(pred, size, dtype=dtype),
            trg_kps=gt,
            src_visible=pair.src_visible,
            trg_visible=pair.trg_visible,
            threshold=frame.threshold(self.threshold, pair),
            alphas=self.alphas,
            comparison=self.comparison,
            arithmetic=self.arithmetic,
            threshold_mode=self.threshold,
            dagger_candidates=self.dagger_candidates,
        )


@dataclass(frozen=True)
class BenchmarkSpec:
    """A named, versioned evaluation: which pairs, read how, scored how.

    name, version: bump ``version`` whenever a change could move a number. A benchmark under a named protocol
        (``corrbench.protocols``) is called ``<base>-<protocol>`` and keeps the base's version.
    dataset: the adapter that reads the data (a name in ``corrbench.datasets.DATASETS``).
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
        data["base"] = self.base_name
        return data

    @property
    def base_name(self) -> str:
        """The benchmark this one applies a named protocol to (``spair71k`` for ``spair71k-geoaware``)."""
        if self.protocol.name == DEFAULT_PROTOCOL_NAME:
            return self.name
        return self.name.removesuffix(f"-{self.protocol.name}")

    @property
    def key(self) -> str:
        """The identity of the pair set and protocol, as tables group runs: ``name@vVERSION``."""
        return f"{self.name}@v{self.version}"
