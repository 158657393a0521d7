"""PCK and PCK-dagger: per-pair scoring and the four averages, in plain numpy.

Definitions (see ``shared/design/PROTOCOL.md``):

PCK@alpha
    A prediction for a keypoint visible in both images is correct when ``||pred - gt||_2 <= alpha * T``,
    ``T`` the reference length of the target (``pck_threshold``: object box, image, or keypoint box).
    The raw Euclidean distance is compared with ``alpha * T`` (never ``distance / T`` with ``alpha``: the
    two differ at the boundary, ``0.9 <= 0.15 * 6`` is False because ``0.15 * 6 == 0.8999999999999999``,
    while ``0.9 / 6 <= 0.15`` is True).

Arithmetic (``ARITHMETICS``; a distance exactly at ``alpha * T`` depends on it)
    ``"float64"`` (corrbench's default): distances and ``alpha * T`` in float64, alphas as the decimals
    they are written as.
    ``"torch-float32"``: what GeoAware-SC and Jamais Vu compute (``pck_train.py``: ``alpha =
    torch.tensor([0.1, 0.05, 0.01])``, keypoints float32 tensors). Their alphas are float32 values, and
    float32(0.05), float32(0.1) and float32(0.15) lie slightly above the decimals while float32(0.01) lies
    below. The product ``alpha * T`` is float64 when ``T`` is a box length (their per-pair thresholds
    arrive as a float64 tensor, and float32 x float64 tensors promote to float64), so under their strict
    ``<`` a distance exactly at ``alpha * T`` counts as correct at 0.05, 0.1 and 0.15 and as wrong at 0.01.
    When ``T`` is the image size (PF-PASCAL: ``alpha * args.ANNO_SIZE``, a Python int) the product is
    float32 and may round back onto the decimal: with ``T = 840``, 0.05 x 840 and 0.1 x 840 are exactly 42
    and 84 (a tie is wrong) while 0.15 x 840 rounds up (a tie is correct). Their distances are float32
    (torch's CPU ``norm``, see ``point_distances``).
    These facts were checked by running their code (see ``tests/data/geoaware_pck_golden.json``).

Comparison
    ``"<="`` (hpf, DIFT, the unified benchmark, MARCO; the default) or strict ``"<"`` (GeoAware-SC,
    Jamais Vu). They differ only for a distance exactly equal to ``alpha * T``.

PCK-dagger@alpha (Aygun & Mac Aodha, "Demystifying Unsupervised Semantic Correspondence Estimation",
ECCV 2022)
    A prediction counts only if it is PCK-correct AND the annotated target keypoint nearest to it, among
    the candidates, is the queried one. It punishes predictions that land on a neighbouring or symmetric
    part. Ties count for the query (see ``nearest_is_query``). Candidates (``DAGGER_CANDIDATES``):
    ``"target-visible"`` (corrbench's default: every keypoint visible in the target, since a part hidden in
    the source is still a part the prediction may wrongly land on) or ``"both-visible"`` (Jamais Vu's
    ``--PCKD``: only the keypoints visible in both images compete). SPair-71k's pair files list only
    mutually visible keypoints, so the two agree there; on AP-10K they differ.

Averages (all four are always reported; a benchmark spec names the default)
    per image: the PCK of each pair (correct / scored points), then the mean over pairs;
    per point: correct points over all scored points.
    ``all`` pools every pair; ``category_mean`` is the unweighted mean of the per-category values;
    ``per_category`` is the pooled value inside each category.

Values in ``PCKAccumulator.summary()`` are percentages (100 * fraction). A pair with no keypoint visible in
both images is counted under ``skipped`` and left out of every average, so no average is ever NaN; when
nothing at all was scored, the values are ``None``.

Determinism: a result must not depend on how pairs were batched, sharded or merged, so the accumulator
iterates pairs sorted by ``pair_id`` and sums floats with ``math.fsum`` (exactly rounded, hence
order-independent).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from corrbench.errors import ConfigError, DataError

ALPHAS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.15, 0.2)
THRESHOLD_MODES = ("bbox", "img", "bbox-kp")
COMPARISONS = ("<=", "<")
ARITHMETICS = ("float64", "torch-float32")
DAGGER_CANDIDATES = ("target-visible", "both-visible")

SKIP_NO_VALID = "no valid keypoint"


def alpha_key(alpha: float) -> str:
    """The dictionary key of an alpha in summaries and result files: ``0.1 -> "0.1"``, ``0.05 -> "0.05"``."""
    return f"{alpha:g}"


def _check_alphas(alphas: Iterable[float]) -> tuple[float, ...]:
    alphas = tuple(float(a) for a in alphas)
    if not alphas:
        raise ConfigError("no PCK alphas given", hint=f"use e.g. {ALPHAS}")
    bad = [a for a in alphas if not (math.isfinite(a) and a > 0)]
    if bad:
        raise ConfigError(f"PCK alphas must be finite and positive, got {bad}")
    keys = [alpha_key(a) for a in alphas]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"PCK alphas {alphas} give duplicate keys {keys}", hint="list each alpha once")
    return alphas


def _check_comparison(comparison: str) -> None:
    if comparison not in COMPARISONS:
        raise ConfigError(f"unknown PCK comparison {comparison!r}", hint=f"use one of {COMPARISONS}")


def pck_threshold(
    mode: str,
    *,
    trg_bbox: np.ndarray | None,
    trg_size: tuple[int, int],
    trg_kps: np.ndarray,
    trg_visible: np.ndarray,
) -> float:
    """The reference length ``T`` of one pair, measured in the target image.

    ``"bbox"``: ``max(x2 - x1, y2 - y1)`` of ``trg_bbox = [x1, y1, x2, y2]`` (SPair-71k, AP-10K, MP-100).
    ``"img"``: ``max(W, H)`` of ``trg_size = (W, H)`` (PF-PASCAL).
    ``"bbox-kp"``: the larger side of the box spanned by the target keypoints visible in the target
    (PF-WILLOW). Visibility in the source does not matter: the box describes the target object.

    Raises ConfigError for an unknown mode and DataError when the data cannot give a usable length (no box,
    no visible keypoint, a zero, negative or non-finite length), since every PCK of the pair would be
    meaningless.
    """
    if mode == "bbox":
        if trg_bbox is None:
            raise DataError(
                "PCK threshold mode 'bbox' needs the target bounding box, but this pair has none",
                hint="use a dataset with boxes, or threshold mode 'img' or 'bbox-kp'",
            )
        x1, y1, x2, y2 = (float(v) for v in np.asarray(trg_bbox, dtype=np.float64).reshape(4))
        threshold = max(x2 - x1, y2 - y1)
        source = f"target bbox {[x1, y1, x2, y2]}"
    elif mode == "img":
        width, height = trg_size
        threshold = float(max(width, height))
        source = f"target image size {tuple(trg_size)}"
    elif mode == "bbox-kp":
        kps = np.asarray(trg_kps, dtype=np.float64).reshape(-1, 2)
        visible = np.asarray(trg_visible, dtype=bool).reshape(-1)
        if visible.shape[0] != kps.shape[0]:
            raise ValueError(f"trg_visible has {visible.shape[0]} entries for {kps.shape[0]} keypoints")
        points = kps[visible]
        if points.shape[0] == 0:
            raise DataError(
                "PCK threshold mode 'bbox-kp' needs visible target keypoints, but this pair has none",
                hint="check the annotation, or use threshold mode 'bbox' or 'img'",
            )
        span = points.max(axis=0) - points.min(axis=0)
        threshold = float(max(span[0], span[1]))
        source = f"box of {points.shape[0]} visible target keypoints"
    else:
        raise ConfigError(f"unknown PCK threshold mode {mode!r}", hint=f"use one of {THRESHOLD_MODES}")
    if not (math.isfinite(threshold) and threshold > 0):
        raise DataError(
            f"PCK threshold ({mode}) is {threshold} from the {source}; it must be finite and positive",
            hint="fix or drop the pair's annotation, or choose another threshold mode",
        )
    return threshold


def _check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {kind} {value!r}", hint=f"use one of {allowed}")


def point_distances(pred: np.ndarray, gt: np.ndarray, arithmetic: str = "float64") -> np.ndarray:
    """``(N,)`` Euclidean distances between row-aligned ``(N, 2)`` points, in the given arithmetic.

    ``"torch-float32"`` reproduces torch's CPU ``Tensor.norm(dim=-1)`` on float32 ``(dy, dx)`` rows (how
    GeoAware-SC and Jamais Vu lay them out): ``sqrt(fma(dx, dx, dy * dy))`` in float32. ``dx * dx`` is
    exact in float64, so adding the float32 ``dy * dy`` in float64 and rounding to float32 gives that fused
    multiply-add up to rare double roundings (equal to torch 2.13's CPU build on 200,000 random float32
    differences; another build may vectorise differently). Returned as float64 (the float32 values exactly).
    """
    _check_choice("PCK arithmetic", arithmetic, ARITHMETICS)
    with np.errstate(invalid="ignore", over="ignore"):
        if arithmetic == "float64":
            diff = np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64)
            return np.sqrt(np.sum(diff * diff, axis=1))
        diff = np.asarray(pred, dtype=np.float32) - np.asarray(gt, dtype=np.float32)
        dx, dy = diff[:, 0].astype(np.float64), diff[:, 1]
        squared = (dx * dx + (dy * dy).astype(np.float64)).astype(np.float32)
        return np.sqrt(squared).astype(np.float64)


def alpha_bounds(
    alphas: Sequence[float], threshold: float, arithmetic: str = "float64", threshold_mode: str | None = None
) -> np.ndarray:
    """``(A,)`` the distances ``alpha * T`` that each alpha's comparison is made against (as float64).

    ``"torch-float32"``: alphas rounded to float32; the product in float64 for a box length and in float32
    for the image size (``threshold_mode == "img"``), as GeoAware-SC / Jamais Vu form it (module docstring).
    """
    _check_choice("PCK arithmetic", arithmetic, ARITHMETICS)
    threshold = float(threshold)
    if arithmetic == "float64":
        return np.array([float(a) * threshold for a in alphas], dtype=np.float64)
    alphas32 = np.asarray(alphas, dtype=np.float32)
    if threshold_mode == "img":
        return (alphas32 * np.float32(threshold)).astype(np.float64)
    return alphas32.astype(np.float64) * threshold


def point_errors_within(
    distances: np.ndarray,
    threshold: float,
    alphas: Sequence[float],
    comparison: str,
    arithmetic: str = "float64",
    threshold_mode: str | None = None,
) -> np.ndarray:
    """``(A, N)`` bool: is each of the N distances within ``alpha * threshold`` for each of the A alphas.

    The raw distance is compared with ``alpha * threshold`` (``alpha_bounds``; not ``distance / threshold``
    with ``alpha``): the two differ by one rounding at the boundary. A NaN or infinite distance is never
    within.
    """
    _check_comparison(comparison)
    threshold = float(threshold)
    if not (math.isfinite(threshold) and threshold > 0):
        raise DataError(f"PCK threshold must be finite and positive, got {threshold}")
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    bounds = alpha_bounds(alphas, threshold, arithmetic, threshold_mode)[:, None]
    with np.errstate(invalid="ignore"):  # NaN compares False, which is what we want
        return distances[None, :] <= bounds if comparison == "<=" else distances[None, :] < bounds


def nearest_is_query(pred: np.ndarray, candidates: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    """PCK-dagger's second condition: is the candidate nearest to each prediction the queried keypoint.

    pred: ``(N, 2)`` predictions for N queries; candidates: ``(M, 2)`` the target keypoints visible in the
    target image; query_rows: ``(N,)`` the row of ``candidates`` that each query's ground truth is.

    Tie rule: ties count in favour of the query, i.e. True iff the distance to the query's own keypoint is
    ``<=`` the distance to every other candidate. A prediction exactly halfway between two keypoints is
    ambiguous, and the PCK condition alone already decides such cases. Distances are compared as squared
    float64 distances computed the same way for every candidate, so a tie is an exact tie. A non-finite
    prediction gives False.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    query_rows = np.asarray(query_rows, dtype=np.int64).reshape(-1)
    if query_rows.shape[0] != pred.shape[0]:
        raise ValueError(f"{query_rows.shape[0]} query rows for {pred.shape[0]} predictions")
    if pred.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    if query_rows.min() < 0 or query_rows.max() >= candidates.shape[0]:
        raise ValueError(f"query rows must index the {candidates.shape[0]} candidates, got {query_rows}")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = pred[:, None, :] - candidates[None, :, :]
        sq = np.sum(diff * diff, axis=2)  # (N, M)
        own = sq[np.arange(pred.shape[0]), query_rows]
        return own <= sq.min(axis=1)  # NaN anywhere in the row -> False


@dataclass(frozen=True)
class PairScore:
    """What one pair contributes to the metrics: enough to recompute every average, and nothing more.

    Counts rather than fractions are stored so that per-image and per-point averages both follow exactly,
    and so that result files can be merged without loss.

    n_points: scored keypoints (visible in both images).
    correct, correct_dagger: per alpha (in the accumulator's alpha order), the number of PCK-correct and
        PCK-dagger-correct points.
    """

    pair_id: str
    category: str
    n_points: int
    correct: tuple[int, ...]
    correct_dagger: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair_id", str(self.pair_id))
        object.__setattr__(self, "category", str(self.category))
        object.__setattr__(self, "n_points", int(self.n_points))
        object.__setattr__(self, "correct", tuple(int(c) for c in self.correct))
        object.__setattr__(self, "correct_dagger", tuple(int(c) for c in self.correct_dagger))
        if self.n_points < 0:
            raise ValueError(f"pair {self.pair_id!r}: n_points must be >= 0, got {self.n_points}")
        if len(self.correct) != len(self.correct_dagger):
            raise ValueError(
                f"pair {self.pair_id!r}: {len(self.correct)} PCK counts but {len(self.correct_dagger)} dagger counts"
            )
        for c, d in zip(self.correct, self.correct_dagger):
            # dagger-correct implies correct, so any other ordering means the counts were corrupted
            if not 0 <= d <= c <= self.n_points:
                raise ValueError(
                    f"pair {self.pair_id!r}: counts must satisfy 0 <= dagger <= correct <= n_points "
                    f"({self.n_points}), got correct={self.correct}, dagger={self.correct_dagger}"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "category": self.category,
            "n_points": self.n_points,
            "correct": list(self.correct),
            "correct_dagger": list(self.correct_dagger),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PairScore:
        return cls(
            pair_id=d["pair_id"],
            category=d["category"],
            n_points=d["n_points"],
            correct=tuple(d["correct"]),
            correct_dagger=tuple(d["correct_dagger"]),
        )


def score_pair(
    pair_id: str,
    category: str,
    *,
    pred: np.ndarray,
    trg_kps: np.ndarray,
    src_visible: np.ndarray,
    trg_visible: np.ndarray,
    threshold: float,
    alphas: Sequence[float] = ALPHAS,
    comparison: str = "<=",
    arithmetic: str = "float64",
    threshold_mode: str | None = None,
    dagger_candidates: str = "target-visible",
) -> PairScore:
    """Score one pair's predictions.

    pred, trg_kps: ``(N, 2)``, row-aligned. Scored rows are ``src_visible & trg_visible``; other rows may
    hold NaN in ``trg_kps`` and anything in ``pred``. PCK-dagger candidates are the rows visible in the
    target (``"target-visible"``) or the scored rows (``"both-visible"``); see the module docstring.
    arithmetic, threshold_mode: how distances and ``alpha * T`` are computed (``point_distances``,
    ``alpha_bounds``).

    A non-finite prediction on a scored row counts as wrong: a method that returns NaN must lose the point,
    not poison the average or crash a long run (contract checks belong to the runner). A non-finite ground
    truth on a target-visible row is an annotation error and raises DataError.
    """
    alphas = _check_alphas(alphas)
    _check_comparison(comparison)
    _check_choice("PCK arithmetic", arithmetic, ARITHMETICS)
    _check_choice("PCK-dagger candidate rule", dagger_candidates, DAGGER_CANDIDATES)
    pred = np.asarray(pred, dtype=np.float64)
    trg_kps = np.asarray(trg_kps, dtype=np.float64)
    src_visible = np.asarray(src_visible, dtype=bool).reshape(-1)
    trg_visible = np.asarray(trg_visible, dtype=bool).reshape(-1)
    n = trg_kps.shape[0] if trg_kps.ndim == 2 else -1
    if trg_kps.shape != (n, 2) or pred.shape != (n, 2):
        raise ValueError(f"pair {pair_id!r}: pred {pred.shape} and trg_kps {trg_kps.shape} must both be (N, 2)")
    if src_visible.shape != (n,) or trg_visible.shape != (n,):
        raise ValueError(
            f"pair {pair_id!r}: visibility shapes {src_visible.shape}, {trg_visible.shape} must be ({n},)"
        )
    if not np.isfinite(trg_kps[trg_visible]).all():
        raise DataError(
            f"pair {pair_id!r}: a keypoint marked visible in the target has a non-finite coordinate",
            hint="fix the annotation or mark the keypoint invisible",
        )

    scored = src_visible & trg_visible
    n_points = int(scored.sum())
    if n_points == 0:
        zeros = (0,) * len(alphas)
        return PairScore(pair_id, category, 0, zeros, zeros)

    distances = point_distances(pred[scored], trg_kps[scored], arithmetic)
    within = point_errors_within(distances, threshold, alphas, comparison, arithmetic, threshold_mode)  # (A, n)

    # Row of each scored keypoint among the candidates (scored rows are always candidates).
    candidates = trg_visible if dagger_candidates == "target-visible" else scored
    candidate_row = np.cumsum(candidates) - 1
    nearest = nearest_is_query(pred[scored], trg_kps[candidates], candidate_row[scored])

    return PairScore(
        pair_id=pair_id,
        category=category,
        n_points=n_points,
        correct=tuple(int(c) for c in within.sum(axis=1)),
        correct_dagger=tuple(int(c) for c in (within & nearest[None, :]).sum(axis=1)),
    )


class PCKAccumulator:
    """Collects ``PairScore``s (from any number of batches or shards) and computes every average.

    Pairs are keyed by ``pair_id``: adding one twice is an error, because silently double-counting a pair
    (for instance when merging overlapping shards) would bias the result.
    """

    def __init__(self, alphas: Sequence[float] = ALPHAS):
        self.alphas: tuple[float, ...] = _check_alphas(alphas)
        self._scores: dict[str, PairScore] = {}

    def add(self, score: PairScore) -> None:
        if len(score.correct) != len(self.alphas):
            raise ValueError(
                f"pair {score.pair_id!r} has counts for {len(score.correct)} alphas, "
                f"the accumulator has {len(self.alphas)} ({self.alphas})"
            )
        if score.pair_id in self._scores:
            raise ValueError(f"pair {score.pair_id!r} was already added; each pair may be scored once")
        self._scores[score.pair_id] = score

    def merge(self, other: PCKAccumulator) -> PCKAccumulator:
        """A new accumulator holding the pairs of both; neither input is changed."""
        if self.alphas != other.alphas:
            raise ValueError(f"cannot merge accumulators with alphas {self.alphas} and {other.alphas}")
        overlap = sorted(self._scores.keys() & other._scores.keys())
        if overlap:
            shown = ", ".join(repr(p) for p in overlap[:5]) + (", ..." if len(overlap) > 5 else "")
            raise ValueError(f"cannot merge: {len(overlap)} pair(s) present in both ({shown})")
        merged = PCKAccumulator(self.alphas)
        merged._scores = {**self._scores, **other._scores}
        return merged

    def __len__(self) -> int:
        return len(self._scores)

    @property
    def scores(self) -> list[PairScore]:
        """All pairs added (skipped ones included), sorted by ``pair_id``."""
        return [self._scores[k] for k in sorted(self._scores)]

    def summary(self) -> dict[str, Any]:
        """Every average, in percent; see the module docstring for the definitions.

        Values are ``None`` when nothing was scored (no pair with a valid keypoint), never NaN.
        """
        scores = self.scores
        used = [s for s in scores if s.n_points > 0]
        by_category: dict[str, list[PairScore]] = defaultdict(list)
        for s in used:  # already in pair_id order, so each category's list is too
            by_category[s.category].append(s)
        categories = sorted(by_category)

        def image_value(pairs: list[PairScore], field: str, a: int) -> float:
            return math.fsum(getattr(s, field)[a] / s.n_points for s in pairs) / len(pairs)

        def point_value(pairs: list[PairScore], field: str, a: int) -> float:
            # integer sums: exact whatever the order
            return sum(getattr(s, field)[a] for s in pairs) / sum(s.n_points for s in pairs)

        def block(field: str, value) -> dict[str, Any]:
            out: dict[str, Any] = {"all": {}, "category_mean": {}, "per_category": {c: {} for c in categories}}
            for a, alpha in enumerate(self.alphas):
                key = alpha_key(alpha)
                if not used:
                    out["all"][key] = None
                    out["category_mean"][key] = None
                    continue
                per_cat = [value(by_category[c], field, a) for c in categories]
                for c, v in zip(categories, per_cat):
                    out["per_category"][c][key] = 100.0 * v
                out["all"][key] = 100.0 * value(used, field, a)
                out["category_mean"][key] = 100.0 * (math.fsum(per_cat) / len(per_cat))
            return out

        return {
            "pck": {"image": block("correct", image_value), "point": block("correct", point_value)},
            "pck_dagger": {
                "image": block("correct_dagger", image_value),
                "point": block("correct_dagger", point_value),
            },
            "counts": {
                "pairs": len(used),
                "points": sum(s.n_points for s in used),
                "categories": len(categories),
                "skipped": {SKIP_NO_VALID: len(scores) - len(used)},
            },
        }
